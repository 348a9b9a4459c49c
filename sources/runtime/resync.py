"""Requests from the book step back to the source that owns a product's connection.

Bytewax dataflows only flow downstream, but a book that crosses is found by the
book step while only the source that owns the connection can resubscribe. Both
are built with the same :class:`ResyncRequests` object: the book step records a
request, and the source partition holding that product picks it up on its next
poll. Placement (:mod:`sources.runtime.placement`) puts every product's book on
the worker that owns its connection, so the request is always local, in any
number of processes.
"""

from __future__ import annotations

import threading
from typing import Dict, List, Tuple

Request = Tuple[str, str, str, str]  # venue, product, reason, detail


class ResyncRequests:
    """Pending resync requests by (venue, product); the latest request wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Dict[Tuple[str, str], Tuple[str, str]] = {}

    def request(self, venue: str, product: str, reason: str, detail: str) -> None:
        """Ask the source of ``venue:product`` for a fresh snapshot."""
        with self._lock:
            self._pending[(venue, product)] = (reason, detail)

    def take(self, owned: "set[Tuple[str, str]]") -> List[Request]:
        """The pending requests for products in ``owned``, removing them."""
        if not self._pending:  # lock-free fast path: polled on every batch
            return []
        with self._lock:
            mine = [k for k in self._pending if k in owned]
            return [(v, p, *self._pending.pop((v, p))) for v, p in mine]

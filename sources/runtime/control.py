"""Requests from the book step back to the sources, within one process.

Bytewax dataflows only flow downstream, but a book that crosses is found by the
book step while only the source partition owning the connection can resubscribe.
The book step records a request here; the partition for that product picks it
up on its next poll. Partitions and book state of a product share a process in
single-process runs; across processes a request for a partition that lives
elsewhere is not seen, and that book stays invalid (no summaries) until its
connection next delivers a snapshot.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional, Tuple

_lock = threading.Lock()
_pending: Dict[str, Tuple[str, str]] = {}


def request_resync(key: str, reason: str, detail: str) -> None:
    """Ask the source of ``key`` (``venue:product``) for a fresh snapshot."""
    with _lock:
        _pending[key] = (reason, detail)


def take_resync(key: str) -> Optional[Tuple[str, str]]:
    """The pending request for ``key``, removing it; None if there is none."""
    if key not in _pending:  # lock-free fast path: polled on every batch
        return None
    with _lock:
        return _pending.pop(key, None)

"""What clients did to a simulator, counted per venue, for tests to check.

A test can then assert that a flow stays within the real venues' limits (peak
connections, message rates, channels per subscribe) and that the simulator
refused what a real venue would, without parsing logs. The server's event loop
writes; any thread may read a copy meanwhile.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Dict, Optional

#: Distinct ``(route, symbol)`` keys counted per venue: the symbols come from
#: clients, and one asking for random names must not grow the server.
MAX_REST_SYMBOLS = 10_000


@dataclass
class VenueStats:
    """One venue's counters (a copy when read through :class:`SimulatorStats`).

    ``peak_message_rate`` is the most rate-counted client messages one IP sent
    within one second (all client messages on Coinbase, subscribe requests on
    Deribit; on Binance every frame one connection sent, pings and pongs
    included); ``rate_limited`` counts those refused over the configured limit,
    and ``message_limit_closes`` the connections closed for it (Binance).
    ``subscribe_sizes`` maps how many channels (Deribit, Binance) or products
    (Coinbase) a subscribe request named to how many requests did.
    ``rest_errors`` counts REST replies with a status of 400 or more,
    ``rest_statuses`` every reply by status, ``rest_symbols`` the requests by
    ``(route, symbol)`` where a ``symbol`` parameter names one (Binance
    ``depth``: whose snapshots a client asked for; at most
    :data:`MAX_REST_SYMBOLS` keys); ``rest_weight`` is the request
    weight charged in all, ``peak_rest_weight`` the most one IP used in one
    window (Binance). ``authentications`` counts accepted credentials (Deribit
    ``client_credentials``, Coinbase Exchange signed subscribes), ``refreshes``
    accepted Deribit refresh tokens, ``auth_failures`` refused ones of either
    kind, and ``expired`` the connections closed because their token ran out.
    """

    open_connections: int = 0
    peak_connections: int = 0
    accepted_connections: int = 0
    refused_handshakes: int = 0
    peak_message_rate: int = 0
    rate_limited: int = 0
    subscribe_requests: int = 0
    subscribe_sizes: Counter = field(default_factory=Counter)
    message_limit_closes: int = 0
    rest_requests: int = 0
    rest_errors: int = 0
    rest_statuses: Counter = field(default_factory=Counter)
    rest_symbols: Counter = field(default_factory=Counter)
    rest_weight: int = 0
    peak_rest_weight: int = 0
    authentications: int = 0
    refreshes: int = 0
    auth_failures: int = 0
    expired: int = 0


class SimulatorStats:
    """Per-venue :class:`VenueStats` of one server; ``stats["deribit"]`` is a copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._venues: Dict[str, VenueStats] = {}

    def __getitem__(self, venue: str) -> VenueStats:
        with self._lock:
            current = self._venues.get(venue, VenueStats())
            return replace(current, subscribe_sizes=Counter(current.subscribe_sizes),
                           rest_statuses=Counter(current.rest_statuses),
                           rest_symbols=Counter(current.rest_symbols))

    def _venue(self, venue: str) -> VenueStats:
        return self._venues.setdefault(venue, VenueStats())

    def opened(self, venue: str) -> None:
        with self._lock:
            v = self._venue(venue)
            v.open_connections += 1
            v.accepted_connections += 1
            v.peak_connections = max(v.peak_connections, v.open_connections)

    def closed(self, venue: str) -> None:
        with self._lock:
            self._venue(venue).open_connections -= 1

    def refused(self, venue: str) -> None:
        with self._lock:
            self._venue(venue).refused_handshakes += 1

    def message_rate(self, venue: str, in_last_second: int, limited: bool) -> None:
        with self._lock:
            v = self._venue(venue)
            v.peak_message_rate = max(v.peak_message_rate, in_last_second)
            v.rate_limited += limited

    def message_limit_close(self, venue: str) -> None:
        with self._lock:
            self._venue(venue).message_limit_closes += 1

    def subscribe(self, venue: str, size: int) -> None:
        with self._lock:
            v = self._venue(venue)
            v.subscribe_requests += 1
            v.subscribe_sizes[size] += 1

    def rest(self, venue: str, status: int, route: Optional[str] = None,
             symbol: Optional[str] = None) -> None:
        with self._lock:
            v = self._venue(venue)
            v.rest_requests += 1
            v.rest_errors += status >= 400
            v.rest_statuses[status] += 1
            key = (route, symbol)
            if symbol is not None and (key in v.rest_symbols
                                       or len(v.rest_symbols) < MAX_REST_SYMBOLS):
                v.rest_symbols[key] += 1

    def weight(self, venue: str, weight: int, used: int) -> None:
        with self._lock:
            v = self._venue(venue)
            v.rest_weight += weight
            v.peak_rest_weight = max(v.peak_rest_weight, used)

    def auth(self, venue: str, outcome: str) -> None:
        """One authentication event: ``authentications``, ``refreshes``,
        ``auth_failures`` or ``expired``."""
        with self._lock:
            v = self._venue(venue)
            setattr(v, outcome, getattr(v, outcome) + 1)

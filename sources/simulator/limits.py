"""The real venues' caps: connections, connects, messages per second, REST weight.

A flow that opens one connection per product, or resubscribes in a storm, works
against an unlimited simulator and is banned by the real venue. Each venue
declares its documented caps (:class:`Limits`, in its exchange module); the
command line and :class:`~sources.simulator.context.SimulatorConfig` can change
them per venue. The caps are per client IP, as the venues state them, except
Binance's message limit, which is per connection; a rate is "at most N in any
one second" (a sliding window, so a burst cannot dodge it). REST request weight
is counted in fixed windows, as Binance resets its counter every minute
(:class:`WeightBudget`). Whatever the caps, the peaks are measured
(:mod:`sources.simulator.stats`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Callable, Deque, Dict, Mapping, NamedTuple, Optional, Tuple

from sources.simulator.stats import SimulatorStats

#: Messages one window remembers while no cap is set: enough to measure any
#: plausible client rate, and a bound on memory for an implausible one.
MEASURED_MAX = 10_000
#: Clients tracked before the idle ones (no connection, nothing in the last
#: second) are forgotten.
CLIENTS_MAX = 1024


@dataclass(frozen=True)
class Limits:
    """One venue's caps per client IP; None: no cap.

    ``max_connections``: open connections at once (Deribit: 32); beyond it the
    handshake is refused with HTTP 429. ``connects_per_second``: new connections
    (also refused with 429). ``messages_per_second``: client messages the venue
    rate-counts (Coinbase: every message, documented as 8/s unauthenticated;
    Deribit: ``public/subscribe``, answered with ``10028 too_many_requests``).
    ``connection_messages_per_second``: frames one connection may send (Binance:
    requests, pings and pongs alike, 5/s spot and 10/s futures); beyond it the
    connection is closed. ``rest_weight_per_minute``: REST request weight per
    IP and window (Binance: 6,000 spot, 2,400 futures); beyond it HTTP 429,
    then 418 (:class:`WeightBudget`).
    """

    max_connections: Optional[int] = None
    connects_per_second: Optional[int] = None
    messages_per_second: Optional[int] = None
    connection_messages_per_second: Optional[int] = None
    rest_weight_per_minute: Optional[int] = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"limit {f.name} must be a whole number >= 1 or off, got {value!r}")


LIMIT_KEYS = tuple(f.name for f in fields(Limits))


def parse_limit(spec: str) -> Tuple[str, str, Optional[int]]:
    """``VENUE.KEY=N`` or ``VENUE.KEY=off`` (command line) -> ``(venue, key, value)``."""
    target, sep, text = spec.partition("=")
    venue, dot, key = target.strip().partition(".")
    if not sep or not dot or key not in LIMIT_KEYS:
        raise ValueError(f"limit {spec!r}: expected VENUE.KEY=N|off with KEY one of "
                         f"{', '.join(LIMIT_KEYS)}")
    text = text.strip()
    if text == "off":
        return venue, key, None
    try:
        return venue, key, int(text)
    except ValueError:
        raise ValueError(f"limit {spec!r}: {text!r} is not a whole number or off") from None


def override(limits: Limits, changes: Mapping[str, Optional[int]]) -> Limits:
    """``limits`` with some keys replaced; raises ValueError naming a bad key."""
    unknown = sorted(set(changes) - set(LIMIT_KEYS))
    if unknown:
        raise ValueError(f"unknown limits {unknown}; valid: {', '.join(LIMIT_KEYS)}")
    return replace(limits, **changes)


class SlidingWindow:
    """Times of the events of the last second (at most ``MEASURED_MAX``)."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: Deque[float] = deque(maxlen=MEASURED_MAX)

    def count(self, now: float) -> int:
        while self._times and self._times[0] <= now - 1.0:
            self._times.popleft()
        return len(self._times)

    def add(self, now: float, cap: Optional[int]) -> Tuple[bool, int]:
        """Count one event unless ``cap`` events happened in the last second;
        returns (allowed, events in the last second including this one)."""
        n = self.count(now)
        if cap is not None and n >= cap:
            return False, n + 1
        self._times.append(now)
        return True, n + 1


class _Client:
    __slots__ = ("open", "connects", "messages")

    def __init__(self) -> None:
        self.open = 0
        self.connects = SlidingWindow()
        self.messages = SlidingWindow()

    def idle(self, now: float) -> bool:
        return not self.open and not self.connects.count(now) and not self.messages.count(now)


class ClientLimiter:
    """Applies each venue's :class:`Limits` per client IP and feeds the stats."""

    def __init__(self, limits: Mapping[str, Limits], stats: SimulatorStats,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = dict(limits)
        self._stats = stats
        self._clock = clock
        self._clients: Dict[Tuple[str, str], _Client] = {}

    def _client(self, venue: str, ip: str) -> _Client:
        key = (venue, ip)
        if key not in self._clients and len(self._clients) >= CLIENTS_MAX:
            now = self._clock()
            self._clients = {k: c for k, c in self._clients.items() if not c.idle(now)}
        return self._clients.setdefault(key, _Client())

    def admit(self, venue: str, ip: str) -> Optional[str]:
        """A new connection: None if admitted (it now counts as open until
        :meth:`release`), else why it is refused."""
        limits = self._limits.get(venue, Limits())
        client = self._client(venue, ip)
        cap = limits.max_connections
        if cap is not None and client.open >= cap:
            self._stats.refused(venue)
            return f"too many connections from {ip}: at most {cap} at once"
        allowed, _ = client.connects.add(self._clock(), limits.connects_per_second)
        if not allowed:
            self._stats.refused(venue)
            return f"too many new connections from {ip}: at most {limits.connects_per_second}/s"
        client.open += 1
        self._stats.opened(venue)
        return None

    def limits(self, venue: str) -> Limits:
        """``venue``'s caps (sessions enforce the per-connection ones)."""
        return self._limits.get(venue, Limits())

    def release(self, venue: str, ip: str) -> None:
        self._client(venue, ip).open -= 1
        self._stats.closed(venue)

    def message(self, venue: str, ip: str) -> bool:
        """One rate-counted client message: False if it is over the limit."""
        client = self._client(venue, ip)
        allowed, n = client.messages.add(self._clock(), self._limits.get(venue, Limits())
                                         .messages_per_second)
        self._stats.message_rate(venue, n, not allowed)
        return allowed


#: A first ban lasts this many windows (Binance: "from 2 minutes"), each further
#: one twice as long as the one before, up to BAN_MAX_WINDOWS ("to 3 days").
BAN_WINDOWS = 2
BAN_MAX_WINDOWS = 3 * 24 * 60


class WeightVerdict(NamedTuple):
    """What :meth:`WeightBudget.charge` decided for one request. ``status``: 200
    (serve it), 429 (over the budget) or 418 (banned). ``used``: the weight used
    in the current window. ``retry_after``: seconds until the window ends (429) or
    the ban does (418), else 0."""

    status: int
    used: int
    retry_after: float


class _Account:
    __slots__ = ("window", "used", "warned", "banned_until", "bans")

    def __init__(self) -> None:
        self.window = -1  # index of the window ``used`` counts
        self.used = 0
        self.warned = False  # answered 429 in this window
        self.banned_until = 0.0
        self.bans = 0


class WeightBudget:
    """REST request weight per (venue, IP) in fixed windows of ``window`` seconds.

    A request that would take the window's weight past the budget is refused
    with 429 and not counted; a client that sends anything again before the
    window ends (the venue's "failing to back off after receiving 429s") is
    banned: every request gets 418 for :data:`BAN_WINDOWS` windows, twice as
    long per repeat. The window is a minute on the real venue; tests shorten it.
    """

    def __init__(self, window: float, stats: SimulatorStats,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window <= 0:
            raise ValueError("the REST weight window must be > 0 seconds")
        self._window = window
        self._stats = stats
        self._clock = clock
        self._accounts: Dict[Tuple[str, str], _Account] = {}

    def _account(self, venue: str, ip: str, now: float) -> _Account:
        key = (venue, ip)
        if key not in self._accounts and len(self._accounts) >= CLIENTS_MAX:
            current = int(now // self._window)
            self._accounts = {k: a for k, a in self._accounts.items()
                              if a.window == current or a.banned_until > now}
        return self._accounts.setdefault(key, _Account())

    def charge(self, venue: str, ip: str, weight: int, budget: int) -> WeightVerdict:
        now = self._clock()
        account = self._account(venue, ip, now)
        if now < account.banned_until:
            return WeightVerdict(418, account.used, account.banned_until - now)
        index = int(now // self._window)
        if index != account.window:
            account.window, account.used, account.warned = index, 0, False
        if account.warned or account.used + weight > budget:
            if not account.warned:
                account.warned = True
                return WeightVerdict(429, account.used, (index + 1) * self._window - now)
            account.bans += 1
            windows = min(BAN_WINDOWS * 2 ** (account.bans - 1), BAN_MAX_WINDOWS)
            account.banned_until = now + windows * self._window
            return WeightVerdict(418, account.used, account.banned_until - now)
        account.used += weight
        self._stats.weight(venue, weight, account.used)
        return WeightVerdict(200, account.used, 0.0)

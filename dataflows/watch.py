"""What each followed product is doing, read from the registry without touching the hot path.

The status line, the metrics endpoint (and so ``lobstream top``) and the
end-of-run table all show the same per-product facts: its state, best bid and
ask, its counters, the time since its last book update and its latest bar. They
are derived here from what the workers keep anyway (the connection's
:class:`~sources.feed.feed.Feed`, the book step's
:class:`~state.product.ProductState`), when a reader asks.

Nothing on the workers reads a clock for this: :class:`Activity` samples each
product's update counter (every second from the status thread, and at each
scrape) and remembers when it last moved, so "last update" is exact to the
sampling interval and free for the flow.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

from sources.runtime.registry import Registry

Name = Tuple[str, str]

#: Product states, in the order a reader should worry about them.
SYNCED = "synced"
WAITING = "waiting"  # subscribed, the snapshot that builds the book not there yet
INVALID = "invalid"  # a gap, a crossed book...: resynchronising
DOWN = "down"  # its connection is down
REFUSED = "refused"  # the exchange refused the subscription: given up
STATES = (SYNCED, WAITING, INVALID, DOWN, REFUSED)


class Activity:
    """When each product's update counter last moved, by sampling (thread-safe)."""

    def __init__(self, registry: Registry, clock: Any = time.monotonic) -> None:
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self._seen: Dict[Name, Tuple[int, float]] = {}

    def sample(self) -> float:
        """Read every product's counter now; returns the sampling time."""
        now = self._clock()
        with self._lock:
            seen = self._seen
            for name, state in list(self._registry.books.items()):
                n = state.counts["updates"]
                last = seen.get(name)
                if last is None or last[0] != n:
                    seen[name] = (n, now if n else self.started)
        return now

    def age(self, name: Name, now: float) -> Optional[float]:
        """Seconds since the product's last book update; None if it never had one."""
        with self._lock:
            last = self._seen.get(name)
        if last is None or last[0] == 0:
            return None
        return max(0.0, now - last[1])


class ProductView(NamedTuple):
    """One product as a person reads it; prices None while its book is not synced."""

    venue: str
    product: str
    state: str
    detail: str  # why it is refused or down, else ""
    bid: Optional[float]
    bid_size: Optional[float]
    ask: Optional[float]
    ask_size: Optional[float]
    updates: int
    gaps: int
    resyncs: int
    trades: int
    bars: int
    age: Optional[float]
    last_bar: Optional[Dict[str, Any]]
    resumed: bool

    @property
    def name(self) -> str:
        return f"{self.venue}:{self.product}"

    @property
    def spread_bps(self) -> Optional[float]:
        if self.bid is None or self.ask is None or self.bid + self.ask <= 0.0:
            return None
        return (self.ask - self.bid) / ((self.ask + self.bid) / 2.0) * 1e4

    @property
    def imbalance(self) -> Optional[float]:
        if self.bid_size is None or self.ask_size is None or self.bid_size + self.ask_size <= 0:
            return None
        return (self.bid_size - self.ask_size) / (self.bid_size + self.ask_size)


def _connection_states(registry: Registry) -> Dict[Name, Tuple[str, str]]:
    """What the connections say of their products: refused, down, or waiting."""
    out: Dict[Name, Tuple[str, str]] = {}
    for feed in registry.feeds:
        venue = feed.venue.name
        for product, p in list(feed.books.items()):
            if p.refused is not None:
                out[(venue, product)] = (REFUSED, p.refused)
            elif feed.outage is not None:
                out[(venue, product)] = (DOWN, feed.outage)
            elif not p.sync.synced:
                out[(venue, product)] = (WAITING, "")
    return out


def products(registry: Registry, activity: Optional[Activity] = None) -> List[ProductView]:
    """Every product this process follows (configured or seen), sorted by name."""
    now = activity.sample() if activity is not None else 0.0
    connections = _connection_states(registry)
    books = dict(registry.books)
    names = sorted(set(connections) | set(books))
    views = []
    for name in names:
        state = books.get(name)
        counts = state.counts if state is not None else {}
        valid = state is not None and state.valid
        conn_state, detail = connections.get(name, (SYNCED if valid else INVALID, ""))
        if valid:
            shown, detail = SYNCED, ""
        elif conn_state == WAITING and counts.get("updates", 0):
            shown = INVALID  # it had a book: resynchronising, not starting
        else:
            shown = conn_state
        top = state.top if valid else (None, None, None, None)
        views.append(ProductView(
            name[0], name[1], shown, detail, top[0], top[1], top[2], top[3],
            counts.get("updates", 0), counts.get("invalid_gap", 0),
            max(0, counts.get("snapshots", 0) - 1), counts.get("trades", 0),
            counts.get("bars", 0),
            activity.age(name, now) if activity is not None else None,
            registry.last_bars.get(name), name in registry.resumed))
    return views


def nothing_followed(views: Iterable[ProductView]) -> Optional[str]:
    """Why no product could be followed (every one refused, or none ever got a
    book), or None when at least one product had a book (or there were none)."""
    views = list(views)
    if not views or any(v.updates for v in views):
        return None
    refused = [v for v in views if v.state == REFUSED]
    if len(refused) == len(views):
        return f"every product was refused by the exchange ({refused[0].detail})"
    down = [v for v in views if v.state == DOWN]
    if down:
        return f"no book was ever received ({down[0].detail})"
    return "no book was ever received"

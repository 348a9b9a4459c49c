"""Binance's books as the simulator serves them: the state REST depth snapshots
are cut from, kept consistent with the diffs each connection is sent.

A recorded symbol's :class:`DepthTimeline` says where the capture's REST
snapshots base the book among its diffs; each connection's :class:`DepthStream`
rebuilds the book from there as it sends the diffs (so a snapshot is the book as
of the last diff that connection's stream took), and :class:`BinanceShared`
finds, for a REST request, the stream to cut the snapshot from. No I/O here.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import (Any, Callable, Deque, Dict, List, Mapping, NamedTuple, Optional, Sequence,
                    Set, Tuple)

from sources.simulator.clock import ExchangeClock
from sources.simulator.outbox import BOOK, OutFrame
from sources.simulator.recording import RecordedFrame, Recording
from sources.simulator.stream import Adapt, ProductStream, SentBook

#: Recording channels: the diffs, and the REST depth replies, by symbol.
DEPTH, SNAPSHOT = "depth", "snapshot"


def update_ids(diff: Dict[str, Any]) -> Optional[Tuple[int, int, Optional[int]]]:
    """``(U, u, pu)`` of a recorded diff, or None if they are not update ids."""
    first, last, prev = diff.get("U"), diff.get("u"), diff.get("pu")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (first, last)) \
            or (prev is not None and (not isinstance(prev, int) or isinstance(prev, bool))):
        return None
    return first, last, prev


def _levels(levels: Any) -> List[Tuple[str, str]]:
    """The ``[price, quantity]`` pairs of a recorded side that are decimal texts."""
    out = []
    for level in levels if isinstance(levels, list) else ():
        if isinstance(level, list) and len(level) >= 2 and isinstance(level[0], str) \
                and isinstance(level[1], str):
            try:
                float(level[0]), float(level[1])
            except ValueError:
                continue
            out.append((level[0], level[1]))
    return out


def _zero(quantity: str) -> bool:
    return float(quantity) == 0.0


class Depth(NamedTuple):
    """A book to serve as a snapshot: its update id, levels (price -> quantity
    texts) and the recorded event dating it (its ``E``/``T``)."""

    last_id: int
    bids: Mapping[str, str]
    asks: Mapping[str, str]
    event: Mapping[str, Any]


def _snapshot_depth(snapshot: Dict[str, Any]) -> Depth:
    return Depth(snapshot["lastUpdateId"],
                 {p: q for p, q in _levels(snapshot.get("bids")) if not _zero(q)},
                 {p: q for p, q in _levels(snapshot.get("asks")) if not _zero(q)}, snapshot)


class DepthTimeline:
    """One recorded symbol's diffs and where the recording's REST snapshots base
    the book, shared by all connections of a server.

    A snapshot with ``lastUpdateId`` L bases the book right before the first
    diff the official procedure would apply after it (spot: ``U <= L+1 <= u``;
    futures: ``U <= L <= u``). A diff that does not chain onto the one before
    (spot ``U != u+1``, futures ``pu != u``) leaves the book unknown until the
    next base.
    """

    def __init__(self, diffs: Sequence[RecordedFrame], snapshots: Sequence[RecordedFrame],
                 futures: bool) -> None:
        self.diffs = diffs
        ids = [update_ids(d.payload) for d in diffs]
        self.bases: Dict[int, Dict[str, Any]] = {}
        for snapshot in snapshots:
            last = snapshot.payload.get("lastUpdateId")
            if not isinstance(last, int) or isinstance(last, bool):
                continue
            for i, diff_ids in enumerate(ids):
                if diff_ids is None or diff_ids[1] < last or (diff_ids[1] == last and not futures):
                    continue
                if diff_ids[0] <= last + (0 if futures else 1):
                    self.bases.setdefault(i, snapshot.payload)
                break
        self.breaks: Set[int] = set()
        for i in range(1, len(ids)):
            before, now = ids[i - 1], ids[i]
            if before is None or now is None or \
                    (now[2] != before[1] if futures else now[0] != before[1] + 1):
                self.breaks.add(i)
        self._base_order = sorted(self.bases)

    def next_base(self, position: int) -> Optional[Dict[str, Any]]:
        """The first snapshot basing the book at or after diff ``position``."""
        i = bisect.bisect_left(self._base_order, position)
        return self.bases[self._base_order[i]] if i < len(self._base_order) else None


Wrap = Callable[[str, Dict[str, Any]], Dict[str, Any]]


class DepthStream(ProductStream):
    """``<symbol>@depth...`` on one connection: the recorded diffs, and the book
    they make (from the timeline's bases on), which REST snapshots are cut from.

    With ``history`` it also keeps how to undo its last ``history`` diffs, so a
    ``stale_snapshot`` fault can serve the book as it was that many diffs ago.
    """

    def __init__(self, product: str, timeline: DepthTimeline, name: str, wrap: Wrap,
                 adapt: Adapt, history: int) -> None:
        super().__init__(product, timeline.diffs, adapt)
        self.timeline = timeline
        self.name = name
        self._wrap = wrap
        self.book: Optional[SentBook] = None
        self.last_id = 0
        self.last_event: Mapping[str, Any] = {}
        #: Per diff applied: the book's id and event before it, and the
        #: ``(side, price, old quantity or None)`` it changed.
        self._undo: Optional[Deque[Tuple[int, Mapping[str, Any],
                                         List[Tuple[str, str, Optional[str]]]]]] = \
            deque(maxlen=history) if history else None

    def apply(self, diff: Dict[str, Any]) -> None:
        index = self.position - 1
        base = self.timeline.bases.get(index)
        if base is not None:
            depth = _snapshot_depth(base)
            self.book = SentBook()
            self.book.bids.update(depth.bids)
            self.book.asks.update(depth.asks)
            self.last_id, self.last_event = depth.last_id, base
            if self._undo is not None:
                self._undo.clear()
        elif index in self.timeline.breaks:
            self.book = None
        ids = update_ids(diff)
        if self.book is None or ids is None:
            self.book = None
            return
        changes: List[Tuple[str, str, Optional[str]]] = []
        for key, side in (("b", self.book.bids), ("a", self.book.asks)):
            for price, quantity in _levels(diff.get(key)):
                changes.append((key, price, side.get(price)))
                if _zero(quantity):
                    side.pop(price, None)
                else:
                    side[price] = quantity
        if self._undo is not None:
            self._undo.append((self.last_id, self.last_event, changes))
        self.last_id, self.last_event = ids[1], diff

    def depth(self, lag: int) -> Optional[Depth]:
        """The book as of the last diff taken, or ``lag`` diffs before it (as far
        back as this stream knows); before the book is known, the next recorded
        snapshot (None if there is none)."""
        if self.book is None:
            ahead = self.timeline.next_base(self.position)
            return None if ahead is None else _snapshot_depth(ahead)
        if not lag or not self._undo:
            return Depth(self.last_id, self.book.bids, self.book.asks, self.last_event)
        sides = {"b": dict(self.book.bids), "a": dict(self.book.asks)}
        last_id, event = self.last_id, self.last_event
        for last_id, event, changes in list(self._undo)[::-1][:lag]:
            for key, price, old in reversed(changes):
                if old is None:
                    sides[key].pop(price, None)
                else:
                    sides[key][price] = old
        return Depth(last_id, sides["b"], sides["a"], event)

    def render(self, diff: Dict[str, Any]) -> OutFrame:
        last = diff.get("u")
        return OutFrame(BOOK, self._wrap(self.name, diff), product=self.product,
                        seq=last if isinstance(last, int) else None)


class BinanceShared:
    """One server's live Binance state for one venue: each recorded symbol's
    timeline, the depth streams open now (by served symbol) and the
    ``exchangeInfo`` reply without its symbols."""

    def __init__(self, venue: str, futures: bool, recording: Recording, clock: ExchangeClock,
                 history: int, info: Dict[str, Any]) -> None:
        self.venue = venue
        self.futures = futures
        self.recording = recording
        self.clock = clock
        self.history = history
        self.info = info
        self._timelines: Dict[str, DepthTimeline] = {}
        self._streams: Dict[str, Set[DepthStream]] = {}

    def timeline(self, source: str) -> DepthTimeline:
        found = self._timelines.get(source)
        if found is None:
            found = self._timelines[source] = DepthTimeline(
                self.recording.frames(self.venue, DEPTH, source),
                self.recording.frames(self.venue, SNAPSHOT, source), self.futures)
        return found

    def register(self, stream: DepthStream) -> None:
        self._streams.setdefault(stream.product, set()).add(stream)

    def unregister(self, stream: DepthStream) -> None:
        streams = self._streams.get(stream.product)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.product]

    def depth(self, symbol: str, source: str, lag: int) -> Optional[Depth]:
        """The book a snapshot of ``symbol`` is cut from: that of the subscribed
        depth stream furthest along (never older than any connection's stream),
        else the recording's first snapshot."""
        live = [s for s in self._streams.get(symbol, ()) if s.active]
        if live:
            return max(live, key=lambda s: s.position).depth(lag)
        first = self.timeline(source).next_base(0)
        return None if first is None else _snapshot_depth(first)

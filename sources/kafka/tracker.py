"""Where a restarted analytics flow resumes reading a raw-topic partition, so its books
come out exactly as if it had never stopped. Pure: no Kafka client here.

Books are never in Bytewax's snapshots (:mod:`state.product`: copying tens of
thousands of levels every epoch is what the design avoids). A Kafka topic, unlike
a live socket, can be read again, so after a crash each book is rebuilt from the
topic instead: a partition's resume state (:class:`PartitionState`) holds, per
connection stream, the offset of the frame from which a fresh feed, fed the same
lines, decides everything exactly as the uninterrupted one did
(:class:`StreamState`), and the first offset not yet emitted into the dataflow
(``next``). On resume the partition reads from the smallest such offset; frames
below ``next`` only rebuild books (their records were emitted before the crash),
frames from ``next`` on are processed normally.

Which frame rebuilds a book (:class:`StreamTracker`):

* venues with a snapshot in the stream (Coinbase, Deribit): the frame that carried
  the book's last snapshot (or top-N refresh). A fresh feed started there takes the
  snapshot exactly as the running one did: a snapshot re-bases every check. A
  product without a book adds no constraint (a fresh feed drops its deltas, as the
  running one does, until a snapshot);
* venues with REST snapshots (Binance): the frame where the book's current episode
  began (it was lost, the connection opened, the product first appeared), whether
  the book is synced by now or not: its snapshot is applied together with the diffs
  buffered since then, which a fresh feed started later would not have;
* a stream's start is the smallest of its products' offsets, or ``next`` when none
  constrains it; frames of the stream before its start are skipped, and its feed
  begins with the exchange clock it had there (``clock``, so bar clocks tick on the
  same frames) and the products it knew (so quiet products still hear the clock).

The periodic snapshot refresh of the capture (``kafka.snapshot_refresh``) bounds
how far back a start lies: a resubscription for stream venues, a resync event for
REST venues, every refresh interval per product.

A restart can find its frames gone: retention deleted the start of a stream, or the
topic was recreated (a broker that lost its data). :func:`plan_resume` sorts
streams into those still rebuildable and those lost; each frame's fingerprint
(stream and capture time) lets the partition check, on the first frame it reads,
that the topic still holds what it read before.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from sources.capture.codec import CaptureFrame
from sources.feed.captured import deliver, listen_only
from sources.feed.feed import Feed, Keyed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.venues.base import Venue
from state.events import REFRESH, SNAPSHOT, BookEvent, BookStatus

INVALID = "invalid"


class Point(NamedTuple):
    """A frame to start a stream's feed at: its offset, its capture time (the
    fingerprint checked on resume) and the feed's exchange clock before it."""

    offset: int
    ts: float
    clock: float


class StreamState(NamedTuple):
    """A stream's part of the resume state."""

    venue: str
    start: Point
    #: Products its feed knew, in the order it learnt them.
    products: Tuple[str, ...]
    #: Products whose book was synced at ``next`` (their loss is reported).
    synced: Tuple[str, ...]


class PartitionState(NamedTuple):
    """One raw-topic partition's resume state, pickled into Bytewax's recovery store."""

    #: The first offset not yet emitted into the dataflow.
    next: int
    #: ``(stream, ts)`` of the frame at ``next - 1``; None when nothing was read.
    last: Optional[Tuple[str, float]]
    streams: Dict[str, StreamState]


class StreamTracker:
    """Follows one stream's feed outputs to know where its books were rebuilt."""

    __slots__ = ("venue", "rest", "points", "synced", "products", "last_ts")

    def __init__(self, venue: str, rest: bool, products: Iterable[str] = (),
                 start: Optional[Point] = None) -> None:
        """``products`` the feed is started with, at ``start`` (a resume): a REST
        product's episode is taken to begin there, which is at or before where it
        really began."""
        self.venue = venue
        self.rest = rest
        self.products: Dict[str, None] = dict.fromkeys(products)
        self.points: Dict[str, Point] = {p: start for p in self.products} \
            if rest and start is not None else {}
        self.synced: Set[str] = set()
        #: Capture time of the last frame of the stream.
        self.last_ts = 0.0

    def learn(self, products: Iterable[str], offset: int, ts: float, clock: float) -> List[str]:
        """Products the feed knows now; returns the new ones. A REST product's
        episode begins where it first appears."""
        new = [p for p in products if p not in self.products]
        for product in new:
            self.products[product] = None
            if self.rest:
                self.points.setdefault(product, Point(offset, ts, clock))
        return new

    def frame(self, offset: int, ts: float, clock: float, items: Iterable[Tuple[str, object]],
              event: Optional[str] = None) -> None:
        """What the feed made of the frame at ``offset`` (``event``: the kind of an
        ``event`` line, which resets the connection's books)."""
        self.last_ts = ts
        rest, points, synced = self.rest, self.points, self.synced
        for _, item in items:
            kind = type(item)
            if kind is BookEvent:
                if item.kind is SNAPSHOT or item.kind is REFRESH:  # type: ignore[attr-defined]
                    product = item.product  # type: ignore[attr-defined]
                    synced.add(product)
                    if not rest:
                        points[product] = Point(offset, ts, clock)
            elif kind is BookStatus and item.state == INVALID:  # type: ignore[attr-defined]
                product = item.product  # type: ignore[attr-defined]
                if product in synced:
                    synced.discard(product)
                    if rest:
                        points[product] = Point(offset, ts, clock)
                    else:
                        points.pop(product, None)
        if rest and event == "open":
            here = Point(offset, ts, clock)
            for product in self.products:
                points[product] = here  # connected(): every buffer starts afresh
        elif rest and event == "close":
            # Nothing chains across a closed connection: the next open resets it all.
            points.clear()

    def forget(self, known: Iterable[str]) -> None:
        """Drop the products the feed no longer follows (a ``remove`` event)."""
        keep = set(known)
        for product in [p for p in self.products if p not in keep]:
            del self.products[product]
            self.points.pop(product, None)
            self.synced.discard(product)

    def state(self, next_offset: int, clock: float) -> StreamState:
        """The stream's resume state at ``next_offset`` (``clock``: the feed's clock
        now, used when no book constrains the start)."""
        start = min(self.points.values(), default=None) or Point(next_offset, 0.0, clock)
        return StreamState(self.venue, start, tuple(self.products), tuple(sorted(self.synced)))


class ResumePlan(NamedTuple):
    """Where to begin reading a partition after a restart, and what was lost."""

    #: The first offset to read.
    begin: int
    #: ``(stream, ts)`` the frame at ``begin`` must have; None: nothing to check.
    expect: Optional[Tuple[str, float]]
    #: Streams rebuilt from the topic, and the frame each starts at.
    streams: Dict[str, StreamState]
    #: Streams whose start was deleted: their synced books are lost.
    lost: Dict[str, StreamState]
    #: Offsets ``[next, low)`` were deleted before they were read.
    gap: bool


def plan_resume(state: PartitionState, low: int) -> ResumePlan:
    """The plan for resuming from ``state`` on a partition whose first retained
    offset is ``low``."""
    if state.next < low:
        # Frames were deleted before this flow ever read them: every book missed them.
        return ResumePlan(low, None, {}, dict(state.streams), True)
    kept = {s: st for s, st in state.streams.items() if st.start.offset >= low}
    lost = {s: st for s, st in state.streams.items() if st.start.offset < low}
    starts = [st.start for st in kept.values() if st.start.offset < state.next]
    if starts:
        first = min(starts)
        stream = next(s for s, st in kept.items() if st.start == first)
        return ResumePlan(first.offset, (stream, first.ts), kept, lost, False)
    if state.last is not None and state.next - 1 >= low:
        # Nothing to rebuild: read the last frame read before, only to check it.
        return ResumePlan(state.next - 1, state.last, kept, lost, False)
    return ResumePlan(state.next, None, kept, lost, False)


class ResumableStream:
    """One connection stream read from the topic: its listen-only feed and its
    tracker, started afresh or where a resume state says. Pure; the Kafka
    partition holds one per stream."""

    __slots__ = ("feed", "tracker", "skip")

    def __init__(self, venue: Venue, stream: str, key: Callable[[str], str], bad: BadInput,
                 errors: ErrorReplies, clock_ms: float = 0.0,
                 resume: Optional[StreamState] = None) -> None:
        products = resume.products if resume is not None else None
        self.feed = listen_only(Feed(venue, products, bad, stream, key=key, errors=errors,
                                     clock_ms=clock_ms))
        self.feed.fixed = False  # the products a stream carries appear as it goes
        if resume is None:
            self.tracker = StreamTracker(venue.name, venue.rest_snapshots)
            #: Frames below this offset are skipped (they precede the stream's start).
            self.skip = 0
        else:
            self.feed.clock_at = resume.start.clock
            self.tracker = StreamTracker(venue.name, venue.rest_snapshots, resume.products,
                                         resume.start)
            self.skip = resume.start.offset

    def handle(self, offset: int, frame: CaptureFrame) -> Tuple[List[Keyed], List[str]]:
        """The frame at ``offset``: what the feed made of it, and the products it
        named for the first time."""
        feed, tracker = self.feed, self.tracker
        clock, known = feed.clock_at, len(feed.books)
        items: List[Keyed] = []
        deliver(feed, frame, items)
        if feed.requests:
            feed.requests.clear()  # REST snapshots come from the capture
        event = _event_kind(frame) if frame.dir == "event" else None
        if event == "remove":
            tracker.forget(feed.books)
        new = tracker.learn(feed.books, offset, frame.ts, clock) \
            if len(feed.books) > known else []
        tracker.frame(offset, frame.ts, clock, items, event)
        return items, new

    def state(self, next_offset: int) -> StreamState:
        return self.tracker.state(next_offset, self.feed.clock_at)


def _event_kind(frame: CaptureFrame) -> Optional[str]:
    try:
        msg = frame.msg
    except ValueError:  # FrameDecodeError: deliver() reported it
        return None
    kind = msg.get("event") if isinstance(msg, dict) else None
    return kind if isinstance(kind, str) else None

"""The analytics input: a capture's raw topic, read as a replay reads a capture file.

Each line is one capture line (:mod:`sources.capture.format`); every connection
stream gets a :class:`~sources.feed.feed.Feed` that hears what the capture's feed
heard (:func:`~sources.feed.captured.deliver`), so books, trades and statuses come
out as from a replay of the same frames. Feeds only listen
(:class:`~sources.feed.captured.ListenOnly`): what the analytics need from the
capture goes through the control topic (:mod:`sources.kafka.control`).

**Unit of parallelism and placement.** A Kafka partition, which holds whole
connection streams (the capture keys messages by stream). Each worker reads whole
partitions, placed by :func:`~sources.runtime.placement.assign` over the workers
(equal weight each), and every product read from a partition gets a routing key
(:func:`~sources.runtime.placement.routing_key`) that Bytewax's hash sends to the
worker reading it: a book, its frames and its sinks share a worker, as with
websockets and replays. The source is a ``FixedPartitionedSource`` (not a
``DynamicSource``, which has no resume state in Bytewax 0.21) whose
``list_parts`` returns, on each worker, only the partitions planned for it, so
Bytewax builds each partition where it was planned. ``list_parts`` is given no
worker index; a :class:`WorkerProbe`, the flow's first input, records it per
worker thread when Bytewax builds it (the dynamic input is built before the
partitioned one's ``list_parts`` runs, on the same thread: measured, and checked
in a 2-process test).

Reading follows Bytewax's ``KafkaSource``: ``assign`` (never a consumer-group
``subscribe``), no committed offsets, the position lives in Bytewax's snapshots.

**Delivery and resume.** Frames are consumed once per run, in offset order. The
resume state (:class:`~sources.kafka.tracker.PartitionState`) is the first offset
not yet emitted plus, per stream, where its books can be rebuilt from. After a
restart with recovery the partition reads from the earliest such frame: frames
before the resume offset only rebuild books (``Rebuild`` items: no record), later
ones are processed as usual. So books equal an uninterrupted run's; records of
frames processed after the last epoch snapshot are emitted again, identically
(each record's ``src`` names the raw partition, offset and position that produced
it: a consumer drops one whose ``src`` it has seen). Restart time: reading
(without records) from the oldest rebuild frame, at most one snapshot-refresh
interval per product back plus an epoch; see the README for measured rates.
Without resume state a partition starts at ``kafka.start``.

**Lost frames.** If the rebuild frames were deleted (retention, or a topic
recreated by a broker that lost its data: each rebuild frame's stream and capture
time are checked on the first read), the affected books get an ``invalid`` status
with reason ``snapshot_lost`` (records with ``src`` null) and a control request for
a fresh snapshot, and stay invalid until a snapshot comes. Streams still
rebuildable are rebuilt.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

from bytewax.inputs import (DynamicSource, FixedPartitionedSource, StatefulSourcePartition,
                            StatelessSourcePartition)

from sources.capture.codec import CaptureFrame, LineParser
from sources.capture.reader import CaptureReport
from sources.feed.reporting import BadInput, ErrorReplies
from sources.kafka.client import Health, client_config, kafka, wait_for_topics
from sources.kafka.control import ControlPublisher
from sources.kafka.settings import KafkaSettings
from sources.kafka.tracker import PartitionState, ResumableStream, StreamState, plan_resume
from sources.runtime import shutdown
from sources.runtime.placement import Unit, assign, routing_key
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.venues import VENUES
from state.events import BookEvent, BookStatus

log = logging.getLogger("lobstream.kafka")

INVALID = "invalid"
LOST = "snapshot_lost"
#: Connection streams one partition follows at most; frames of further ones are
#: counted and skipped (a capture opens one stream per connection).
MAX_STREAMS = 10_000
#: How long an idle partition waits before it polls again.
IDLE = timedelta(milliseconds=5)
_BOOK_TYPES = (BookEvent, BookStatus)


class Rebuild(NamedTuple):
    """A book event or status from a frame whose records were emitted before the
    restart: it rebuilds the book and emits nothing."""

    item: Any


class Lost(NamedTuple):
    """A book that was synced when the flow stopped and cannot be rebuilt."""

    status: BookStatus


class WorkerProbe(DynamicSource[Any]):
    """Records, for each worker thread, its worker index and count (see the module
    docstring); emits nothing. It must be the flow's first input."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: Dict[int, Tuple[int, int]] = {}

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> "_Nothing":
        with self._lock:
            self._workers[threading.get_ident()] = (worker_index, worker_count)
        return _Nothing()

    def here(self) -> Tuple[int, int]:
        """``(worker index, worker count)`` of the calling worker thread."""
        with self._lock:
            found = self._workers.get(threading.get_ident())
        if found is None:
            raise RuntimeError("the worker probe was not built on this thread before the "
                               "Kafka input: it must be the flow's first input step")
        return found


class _Nothing(StatelessSourcePartition[Any]):
    def next_batch(self) -> List[Any]:
        raise StopIteration()


def part_name(topic: str, index: int) -> str:
    return f"{topic}:{index}"


def placement(topic: str, partitions: int, workers: int) -> Dict[str, int]:
    """Which worker reads each partition of ``topic``."""
    return assign([Unit(part_name(topic, i), 1.0) for i in range(partitions)], workers)


class KafkaFrameSource(FixedPartitionedSource[Any, Optional[PartitionState]]):
    """Items from the raw topic, keyed for the book step; see the module docstring.

    Live items are ``(key, (partition, offset, event))``; after a restart also
    ``(key, Rebuild(event))`` and ``(key, Lost(status))``
    (:mod:`dataflows.kafka_book` handles them)."""

    def __init__(self, settings: KafkaSettings, probe: WorkerProbe, *,
                 resync: ResyncRequests, registry: Registry, publisher: ControlPublisher,
                 batch_size: int = 1000, clock_ms: float = 0.0) -> None:
        self.settings = settings
        self.probe = probe
        self.resync = resync
        self.registry = registry
        self.publisher = publisher
        self.batch_size = batch_size
        self.clock_ms = clock_ms
        self.report = CaptureReport()
        self.bad = BadInput()
        self.errors = ErrorReplies()

    def list_parts(self) -> List[str]:
        worker, workers = self.probe.here()
        topic = self.settings.raw_topic
        count = wait_for_topics(self.settings, [topic], "analytics")[topic]
        mine = [p for p, w in placement(topic, count, workers).items() if w == worker]
        log.info("kafka: worker %d of %d reads %s", worker, workers, ", ".join(mine) or "nothing")
        return mine

    def build_part(self, step_id: str, for_part: str,
                   resume_state: Optional[PartitionState]) -> "_FramePartition":
        worker, workers = self.probe.here()
        topic, _, index = for_part.rpartition(":")
        return _FramePartition(self, topic, int(index), worker, workers, resume_state)


class _FramePartition(StatefulSourcePartition[Any, Optional[PartitionState]]):
    """One raw-topic partition on its worker."""

    def __init__(self, source: KafkaFrameSource, topic: str, index: int, worker: int,
                 workers: int, resume: Optional[PartitionState]) -> None:
        ck = kafka()
        settings = source.settings
        self._source = source
        self._topic = topic
        self._index = index
        self._worker = worker
        self._workers = workers
        self._where = Path(f"kafka:{topic}[{index}]")  # how bad lines are reported
        self._health = Health(f"raw topic {topic}[{index}]",
                              "reading resumes where it stopped when they return")
        self._consumer = ck.Consumer(client_config(settings, self._health, **{
            "group.id": "lobstream-analytics", "enable.auto.commit": False,
            "enable.partition.eof": not settings.tail, "auto.offset.reset": "error"}))
        self._parser = LineParser(validate=False)  # venue parsers report broken frames
        self._streams: Dict[str, ResumableStream] = {}
        self._refused: Set[str] = set()
        self._owned: Set[Tuple[str, str]] = set()
        self._stream_of: Dict[Tuple[str, str], str] = {}
        self._pending: List[Any] = []
        self._resume = resume
        self._emit_from = 0
        self._next: Optional[int] = None
        self._last: Optional[Tuple[str, float]] = None
        self._expect: Optional[Tuple[int, str, float]] = None
        self._begin = 0
        self._ask_new = resume is None and settings.start == "latest"
        self._eof = False
        self._idle = False
        self._started = time.monotonic()
        if resume is None:
            begin = ck.OFFSET_BEGINNING if settings.start == "earliest" else ck.OFFSET_END
        else:
            begin = self._plan(resume, self._low())
        self._consumer.assign([ck.TopicPartition(topic, index, begin)])

    # -- resume ----------------------------------------------------------------------
    def _low(self) -> int:
        """The partition's first retained offset (waits for the brokers)."""
        ck = kafka()
        while True:
            try:
                low, _ = self._consumer.get_watermark_offsets(
                    ck.TopicPartition(self._topic, self._index), timeout=5.0, cached=False)
                return int(low)
            except ck.KafkaException as ex:
                self._health.error(ex.args[0])
                if shutdown.requested():
                    return 0
                time.sleep(1.0)

    def _plan(self, resume: PartitionState, low: int) -> int:
        """Set up feeds as they were where each stream restarts; the first offset to read."""
        plan = plan_resume(resume, low)
        self._begin = plan.begin
        self._next = resume.next
        self._emit_from = low if plan.gap else resume.next
        if plan.expect is not None:
            self._expect = (plan.begin, *plan.expect)
        for stream, st in plan.streams.items():
            if st.venue in VENUES:
                self._stream(stream, st.venue, st)
        if plan.lost:
            why = (f"frames {resume.next}..{low - 1} were deleted before this flow read them"
                   if plan.gap else "the frames its book was rebuilt from were deleted by "
                   "retention")
            self._lose(plan.lost, why)
        return plan.begin

    def _lose(self, streams: Dict[str, StreamState], why: str) -> None:
        """Report the synced books of ``streams`` as lost and ask the capture for
        fresh snapshots of them."""
        now = time.time() * 1000.0
        n = 0
        for st in streams.values():
            for product in st.synced:
                n += 1
                key = routing_key(st.venue, product, self._worker, self._workers)
                self._pending.append((key, Lost(BookStatus(st.venue, product, now, INVALID,
                                                           LOST, why))))
                self._source.publisher.request(st.venue, product, now, LOST, why)
        if n:
            log.error("kafka: %s[%d]: %d books cannot be rebuilt: %s; asked the capture for "
                      "fresh snapshots", self._topic, self._index, n, why)

    def _rewritten(self, offset: int) -> None:
        """The partition does not hold what this flow read before (a recreated
        topic): every book is lost, and the content is read anew from its start."""
        ck = kafka()
        log.error("kafka: %s[%d]: offset %d is not the frame read there before: the topic was "
                  "recreated or rewritten; reading it anew", self._topic, self._index, offset)
        resume = self._resume
        assert resume is not None
        self._lose(resume.streams, "the topic no longer holds the frames this book was built "
                   "from (recreated); it is read anew")
        self._resume = None
        self._streams.clear()
        self._emit_from = 0
        self._next = 0
        self._expect = None
        self._consumer.seek(ck.TopicPartition(self._topic, self._index, ck.OFFSET_BEGINNING))

    # -- streams -----------------------------------------------------------------------
    def _stream(self, stream: str, venue_name: str,
                resume: Optional[StreamState] = None) -> Optional[ResumableStream]:
        """A new stream (resumed where ``resume`` says), or None if it cannot be
        followed."""
        venue = VENUES.get(venue_name)
        if venue is None or len(self._streams) >= MAX_STREAMS:
            if stream not in self._refused:
                self._refused.add(stream)
                why = "an unknown venue" if venue is None else f"over {MAX_STREAMS} streams"
                log.warning("kafka: %s[%d]: skipping stream %r (%s)", self._topic, self._index,
                            stream[:80], why)
            return None
        worker, workers, name = self._worker, self._workers, venue.name

        def key(product: str) -> str:
            return routing_key(name, product, worker, workers)

        source = self._source
        reader = ResumableStream(venue, stream, key, source.bad, source.errors,
                                 source.clock_ms, resume)
        for product in reader.feed.books:
            self._own(name, product, stream)
        source.registry.add_feed(reader.feed)
        self._streams[stream] = reader
        return reader

    def _own(self, venue: str, product: str, stream: str) -> None:
        self._owned.add((venue, product))
        self._stream_of[(venue, product)] = stream

    # -- reading -------------------------------------------------------------------------
    def next_batch(self) -> List[Any]:
        if self._eof or shutdown.requested():
            raise StopIteration()
        ck = kafka()
        msgs = self._consumer.consume(self._source.batch_size, 0)
        out, self._pending = self._pending, []
        self._idle = not msgs
        index, emit_from = self._index, self._emit_from
        streams = self._streams
        parse = self._parser.parse
        for msg in msgs:
            err = msg.error()
            if err is not None:
                code = err.code()
                if code == ck.KafkaError._PARTITION_EOF:
                    self._eof = True
                elif code in (ck.KafkaError._AUTO_OFFSET_RESET,
                              ck.KafkaError.OFFSET_OUT_OF_RANGE):
                    self._out_of_range()
                    break
                else:
                    self._health.error(err)
                continue
            offset = msg.offset()
            value = msg.value() or b""
            frame = parse(value)
            self._next = offset + 1
            if type(frame) is not CaptureFrame:
                if frame is not None:
                    self._source.report.bad_line(self._where, offset, frame, value)
                continue
            if self._expect is not None:
                expect, self._expect = self._expect, None
                if (offset, frame.stream, frame.ts) != expect:
                    self._rewritten(offset)
                    break
            stream = frame.stream
            reader = streams.get(stream)
            if reader is None:
                reader = self._stream(stream, frame.venue) if stream not in self._refused \
                    else None
                if reader is None:
                    continue
            if offset < reader.skip:
                continue
            items, new = reader.handle(offset, frame)
            if new:
                self._learn(reader, new)
            if offset >= emit_from:
                out.extend([(k, (index, offset, ev)) for k, ev in items])
            else:
                out.extend([(k, Rebuild(ev)) for k, ev in items if type(ev) in _BOOK_TYPES])
                if offset + 1 == emit_from:
                    log.info("kafka: %s[%d]: books rebuilt from offset %d up to %d in %.2f s",
                             self._topic, index, self._begin, offset,
                             time.monotonic() - self._started)
            self._last = (stream, frame.ts)
        if msgs:
            self._health.ok()
        self._requests()
        return out

    def _learn(self, reader: ResumableStream, products: List[str]) -> None:
        venue = reader.feed.venue.name
        for product in products:
            self._own(venue, product, reader.feed.stream)
            if self._ask_new:
                self._source.publisher.request(venue, product, time.time() * 1000.0,
                                               "no_snapshot", "analytics started at the end "
                                               "of the topic")

    def _requests(self) -> None:
        """Resync requests of the book step (crossed books) to the control topic,
        dated by the capture time the stream has reached."""
        for venue, product, reason, detail in self._source.resync.take(self._owned):
            reader = self._streams.get(self._stream_of.get((venue, product), ""))
            ts = reader.tracker.last_ts if reader is not None else time.time() * 1000.0
            self._source.publisher.request(venue, product, ts, reason, detail)

    def _out_of_range(self) -> None:
        """The broker has no frame at the position asked for: retention overtook it
        (or the topic is shorter than it was)."""
        ck = kafka()
        low = self._low()
        resume = self._resume
        if resume is not None and self._expect is not None:
            # Nothing read yet since the restart: where the books were rebuilt from
            # is gone. If retention moved the start, rebuild what is left; if the
            # position is past the end, the topic is not the one read before.
            if plan_resume(resume, low).begin == self._begin:
                self._rewritten(low)
                return
            self._streams.clear()
            begin = self._plan(resume, low)
            self._consumer.seek(ck.TopicPartition(self._topic, self._index, begin))
            return
        # Reading live, and the next frame is gone: everything on the partition missed it.
        states = {s: r.state(self._next or 0) for s, r in self._streams.items()}
        self._lose(states, f"frames from offset {self._next} were deleted by retention before "
                   "this flow read them")
        self._streams.clear()
        self._emit_from = self._next = low
        self._consumer.seek(ck.TopicPartition(self._topic, self._index, low))

    def next_awake(self) -> Optional[datetime]:
        return datetime.now(timezone.utc) + IDLE if self._idle else None

    def snapshot(self) -> Optional[PartitionState]:
        resume = self._resume
        if self._next is None:
            return resume  # nothing read yet: the next run starts as this one did
        if resume is not None and self._next < resume.next:
            return resume  # still rebuilding: what the run started from still holds
        return PartitionState(self._next, self._last,
                              {s: r.state(self._next) for s, r in self._streams.items()})

    def close(self) -> None:
        self._consumer.close()
        self._source.publisher.close()


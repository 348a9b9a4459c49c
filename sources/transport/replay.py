"""Replay of lobstream captures through the same parsers and checks as live input.

The unit of parallelism is the capture's stream (one recorded connection):
connection-level counters such as Coinbase ``sequence_num`` only make sense
within one. Streams are spread over workers with the same placement as live
connections (:mod:`sources.runtime.placement`), each product's routing key sends
its book to the worker reading its stream, and each worker reads only its own
streams. So a replay scales over processes exactly like a live run.

``speed=0`` replays as fast as the dataflow takes it, file after file (one open
file at a time per worker, so a directory of thousands of captures replays under
any open-file limit), which makes the output a deterministic function of the
capture (``ts_recv`` is the recorded receive time). ``speed=1`` keeps the recorded
pacing across files, other values scale it; that merges files by time, so it
needs them open together (at most :data:`MAX_PACED_FILES`).

Delivery: the source keeps no resume position. Books are never restored from
snapshots, so a resumed replay starts from the beginning: a position mid-file
would only feed deltas to books that wait for a snapshot that already went by.
"""

from __future__ import annotations

import heapq
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

from bytewax.inputs import DynamicSource, StatelessSourcePartition

from sources.capture.format import (CaptureFrame, CaptureReport, StreamInfo, capture_files,
                                    list_streams, read_capture)
from sources.feed.captured import deliver
from sources.feed.feed import Feed, Keyed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.runtime import shutdown
from sources.runtime.placement import Unit, assign, routing_key
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.venues import get_venue

PathLike = Union[str, Path]

#: Paced replays merge files by time and so hold them all open at once.
MAX_PACED_FILES = 256


class ReplaySource(DynamicSource[Keyed]):
    """Book events from captures (files or directories of them)."""

    def __init__(self, paths: Sequence[PathLike], speed: float = 0.0, batch_size: int = 500,
                 *, resync: Optional[ResyncRequests] = None,
                 registry: Optional[Registry] = None, clock_ms: float = 0.0) -> None:
        self.files = capture_files(paths)
        self.clock_ms = clock_ms
        #: One report for the whole replay, so each kind of bad line is logged once.
        self.report = CaptureReport()
        self.speed = speed
        self.batch_size = batch_size
        self.resync = resync or ResyncRequests()
        self.registry = registry or Registry()
        self.bad = BadInput()
        self.errors = ErrorReplies()
        self._streams: Optional[Dict[str, StreamInfo]] = None

    def streams(self) -> Dict[str, StreamInfo]:
        if self._streams is None:
            self._streams = list_streams(self.files)
            for info in self._streams.values():
                get_venue(info.venue)  # an unknown venue fails here, at start
        return self._streams

    def check(self) -> None:
        """Read the captures' stream lists now, so a bad path fails at start."""
        streams = self.streams()
        if self.speed > 0 and len(self.files) > MAX_PACED_FILES:
            raise ValueError(f"a paced replay merges captures by time and keeps them open: "
                             f"{len(self.files)} files exceed {MAX_PACED_FILES}; replay at "
                             "full speed (speed = 0) or merge them first")
        if not streams:
            raise ValueError("the captures hold no frames")

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> "_ReplayPartition":
        streams = self.streams()
        owner = assign([Unit(s, 1.0) for s in streams], worker_count)
        mine = {s for s, w in owner.items() if w == worker_index}
        return _ReplayPartition(self, {s: streams[s] for s in sorted(mine)}, worker_index,
                                worker_count)


class _ReplayPartition(StatelessSourcePartition[Keyed]):
    def __init__(self, source: ReplaySource, streams: Dict[str, StreamInfo], worker: int,
                 workers: int) -> None:
        self._source = source
        self._worker, self._workers = worker, workers
        self._feeds: Dict[str, Feed] = {}
        for stream, info in streams.items():
            venue = get_venue(info.venue)

            def key(product: str, name: str = venue.name) -> str:
                return routing_key(name, product, worker, workers)

            feed = Feed(venue, None, source.bad, stream, key=key, errors=source.errors,
                        clock_ms=source.clock_ms)
            source.registry.add_feed(feed)
            self._feeds[stream] = feed
        files = [f for f in source.files if any(f in i.files for i in streams.values())]
        wanted = set(streams)
        readers = (read_capture(f, wanted, report=source.report, validate=False) for f in files)
        self._frames: Iterator[CaptureFrame] = (
            heapq.merge(*readers, key=lambda fr: fr.ts) if source.speed > 0
            else (fr for reader in readers for fr in reader))
        self._speed = source.speed
        self._batch_size = source.batch_size
        self._pending: Optional[CaptureFrame] = None
        self._t0: Optional[Tuple[float, float]] = None  # (first frame ts, wall clock at start)
        self._awake: Optional[datetime] = None
        self._owned: Set[Tuple[str, str]] = set()

    def next_batch(self) -> List[Keyed]:
        if shutdown.requested():
            stops = shutdown.farewell(self._worker, self._workers)
            if stops:
                return stops  # type: ignore[return-value]  # (the other processes stop too)
            raise StopIteration()
        out: List[Keyed] = []
        feeds = self._feeds
        for _ in range(self._batch_size):
            frame = self._pending or next(self._frames, None)
            self._pending = None
            if frame is None:
                if out or not feeds:
                    break
                raise StopIteration()
            if self._speed > 0.0 and not self._due(frame.ts):
                self._pending = frame
                break
            deliver(feeds[frame.stream], frame, out)
        for feed in feeds.values():
            feed.outbox.clear()  # a recording cannot be asked for a new snapshot
        if not feeds:
            raise StopIteration()
        return out

    def _due(self, ts: float) -> bool:
        """Whether a frame recorded at ``ts`` is due at the configured speed."""
        now = time.time()
        if self._t0 is None:
            self._t0 = (ts, now)
        due = self._t0[1] + (ts - self._t0[0]) / 1000.0 / self._speed
        if due <= now:
            self._awake = None
            return True
        self._awake = datetime.fromtimestamp(due, timezone.utc)
        return False

    def next_awake(self) -> Optional[datetime]:
        return self._awake

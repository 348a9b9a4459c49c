"""Replay of lobstream captures through the same parsers and checks as live input.

Partitions are the capture's streams (recorded connections): connection-level
counters such as Coinbase ``sequence_num`` only make sense within one, and
lobstream's recorder writes one stream per product, so replays of its captures
spread over workers exactly like live input does.

``speed=0`` replays as fast as the dataflow takes it, which makes the output a
deterministic function of the capture (``ts_recv`` is the recorded receive time).
``speed=1`` keeps the recorded pacing; other values scale it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from sources.runtime import shutdown
from sources.capture.format import frame_lines
from sources.feed.feed import Feed, Keyed
from sources.venues.frames import BadInput
from sources.venues import get_venue

PathLike = Union[str, Path]


def capture_files(paths: Sequence[PathLike]) -> List[Path]:
    """Expand directories into the captures they hold, in a stable order."""
    files: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.name.endswith((".jsonl", ".jsonl.gz"))))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"capture {p} does not exist")
    return files


def list_streams(files: Sequence[Path]) -> Dict[str, Tuple[str, Path]]:
    """Map each stream to its venue and the file holding it."""
    streams: Dict[str, Tuple[str, Path]] = {}
    for path in files:
        for line in frame_lines(path):
            d = orjson.loads(line)
            if d["stream"] not in streams:
                streams[d["stream"]] = (d["venue"], path)
    return streams


class ReplaySource(FixedPartitionedSource[Keyed, None]):
    """Book events from captures (files or directories of them)."""

    def __init__(self, paths: Sequence[PathLike], speed: float = 0.0,
                 batch_size: int = 500) -> None:
        self.files = capture_files(paths)
        self.speed = speed
        self.batch_size = batch_size
        self.bad = BadInput()
        self._streams: Optional[Dict[str, Tuple[str, Path]]] = None

    def streams(self) -> Dict[str, Tuple[str, Path]]:
        if self._streams is None:
            self._streams = list_streams(self.files)
        return self._streams

    def list_parts(self) -> List[str]:
        return sorted(self.streams())

    def build_part(self, step_id: str, for_part: str,
                   resume_state: Optional[None]) -> "_ReplayPartition":
        # Books are never restored from snapshots, so a resumed replay must start
        # from the beginning: a position mid-file would only feed deltas to books
        # that wait for a snapshot that already went by.
        venue, path = self.streams()[for_part]
        feed = Feed(get_venue(venue), None, self.bad, stream=for_part)
        return _ReplayPartition(path, for_part, feed, self.speed, self.batch_size)


class _ReplayPartition(StatefulSourcePartition[Keyed, None]):
    def __init__(self, path: Path, stream: str, feed: Feed, speed: float,
                 batch_size: int) -> None:
        self._frames = self._read(path, stream)
        self._feed = feed
        self._speed = speed
        self._batch_size = batch_size
        self._pending: Optional[Tuple[float, object, object]] = None
        self._t0: Optional[Tuple[float, float]] = None  # (first frame ts, wall clock at start)
        self._awake: Optional[datetime] = None

    @staticmethod
    def _read(path: Path, stream: str) -> Iterator[Tuple[float, object, object]]:
        """``(ts, msg, raw)`` of the stream's received frames.

        The stream name is looked up in the line's head before decoding it, so a
        partition skips other streams' frames (such as a 5 MB snapshot) cheaply.
        """
        needle = b'"stream":' + orjson.dumps(stream)
        for line in frame_lines(path):
            head = line[:200 + len(needle)]
            if needle not in head or b'"dir":"send"' in head:
                continue
            d = orjson.loads(line)
            yield d["ts"], d.get("msg"), d.get("raw")

    def next_batch(self) -> List[Keyed]:
        if shutdown.requested():
            raise StopIteration()
        out: List[Keyed] = []
        feed = self._feed
        limit = self._batch_size
        for _ in range(limit):
            frame = self._pending or next(self._frames, None)
            self._pending = None
            if frame is None:
                if out:
                    return out
                raise StopIteration()
            ts, msg, raw = frame
            if self._speed > 0.0 and not self._due(ts):
                self._pending = frame
                break
            if raw is not None:
                feed.on_raw(raw, ts, out)
            else:
                feed.on_message(msg, ts, out)
        feed.outbox.clear()  # a recording cannot be asked for a new snapshot
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

    def snapshot(self) -> None:
        return None


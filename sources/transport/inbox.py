"""The bounded hand-over from a worker's socket thread to its Bytewax partition.

Frames are queued by the asyncio thread that reads the sockets and drained by the
partition's ``next_batch``. When the dataflow falls behind (a slow sink, a paused
disk), an unbounded queue grows until the process dies: measured 161 → 674 MB of
RSS in 20 s against a stalled sink. Here the queue is bounded by frames and bytes.
Past either bound, further frames of a connection are dropped and counted; once
the queue has drained to half, the connection's next frame is preceded by an
:class:`Overflowed` marker, on which its feed resynchronises every book it carries
(a book that missed updates must be rebuilt, never summarised). Control items
(connects, disconnects) are tiny and bounded by the reconnect rate; they are never
dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Deque, Dict, List, NamedTuple


class Frame(NamedTuple):
    """A raw frame received on connection ``conn`` at ``ts`` (epoch ms)."""

    conn: int
    raw: bytes
    ts: float
    direction: str = "recv"


class Connected(NamedTuple):
    conn: int
    ts: float


class Disconnected(NamedTuple):
    conn: int
    ts: float
    reason: str


class Overflowed(NamedTuple):
    """``dropped`` frames of ``conn`` were not queued because the queue was full."""

    conn: int
    ts: float
    dropped: int


class RestReply(NamedTuple):
    """The body of a REST snapshot request made for connection ``conn``."""

    conn: int
    url: str
    raw: bytes
    ts: float


class RestFailed(NamedTuple):
    """A REST snapshot request for ``product`` gave up (the client logged why)."""

    conn: int
    product: str


class UniverseChanged(NamedTuple):
    """A venue's re-resolved listing: products to follow and to drop."""

    venue: str
    added: List[str]
    removed: List[str]


class Ended(NamedTuple):
    """Connection ``conn`` is finished for good (end of input, or stopped)."""

    conn: int


class Inbox:
    """A bounded FIFO of frames and control items; see the module docstring."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._items: Deque[Any] = deque()
        self._lock = threading.Lock()
        self.frames = 0
        self.bytes = 0
        #: Connections currently dropping, with how many frames they dropped so far.
        self._dropping: Dict[int, int] = {}
        self.dropped_total = 0
        self.peak_bytes = 0
        self.peak_frames = 0

    def put_frame(self, frame: Frame) -> bool:
        """Queue a frame; False if it was dropped (the queue is full)."""
        size = len(frame.raw)
        with self._lock:
            dropping = self._dropping
            conn = frame.conn
            if conn in dropping:
                if self.frames * 2 >= self.max_frames or self.bytes * 2 >= self.max_bytes:
                    dropping[conn] += 1
                    self.dropped_total += 1
                    return False
                self._items.append(Overflowed(conn, frame.ts, dropping.pop(conn)))
            elif self.frames >= self.max_frames or (self.bytes + size > self.max_bytes
                                                    and self.frames):
                # (a frame larger than the whole bound still passes an empty queue,
                # or a 5 MB snapshot could never be delivered)
                dropping[conn] = 1
                self.dropped_total += 1
                return False
            self._items.append(frame)
            self.frames += 1
            self.bytes += size
            if self.bytes > self.peak_bytes:
                self.peak_bytes = self.bytes
            if self.frames > self.peak_frames:
                self.peak_frames = self.frames
            return True

    def put(self, item: Any) -> None:
        """Queue a control item (never dropped)."""
        with self._lock:
            self._items.append(item)

    def take(self, limit: int) -> List[Any]:
        """Up to ``limit`` items, oldest first."""
        out: List[Any] = []
        with self._lock:
            items = self._items
            frames = size = 0
            while items and len(out) < limit:
                item = items.popleft()
                if type(item) is Frame:
                    frames += 1
                    size += len(item.raw)
                out.append(item)
            self.frames -= frames
            self.bytes -= size
        return out

    def __len__(self) -> int:
        return len(self._items)

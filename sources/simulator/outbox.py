"""The single path every outgoing frame of one connection takes.

Everything a session sends (replies, heartbeats, book data) goes through
:meth:`Outbox.send`, in this order:

1. **stamp**: the venue fills in what belongs to the moment of sending (Coinbase's
   per-connection ``sequence_num`` and ``timestamp``, Deribit's ``usOut``). Doing
   it here, under the connection's send lock, is what makes ``sequence_num`` rise
   in exactly the order frames reach the wire, whichever task produced them.
2. **filter**: an optional :data:`FrameFilter` sees the stamped frame and returns
   the frames to put on the wire instead: none (drop), two (duplicate), an earlier
   held-back one (swap), an edited one (gap, malformed), or it may sleep (stall).
   Stamping first means a dropped Coinbase frame leaves a ``sequence_num`` gap,
   just as a frame lost by the real exchange would.
3. **write**: serialise, send with websocket backpressure, and report book frames
   to the send log so benchmarks can measure end-to-end latency.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, NamedTuple, Optional, Sequence

import orjson
from websockets.asyncio.server import ServerConnection

#: Kinds of outgoing frame. Only ``BOOK`` frames are sent-logged; a fault filter can
#: use the kind to leave control traffic alone.
BOOK = "book"
DATA = "data"  # non-book market data (Coinbase ticker, market_trades)
HEARTBEAT = "heartbeat"
REPLY = "reply"  # answers to requests, including errors


@dataclass
class OutFrame:
    """One message about to be sent, still as a dict so stamps and filters can
    edit it; serialised only at the last moment.

    ``seq`` identifies a book frame in the send log: the Coinbase ``sequence_num``
    (known only once stamped) or the Deribit ``change_id``.
    """

    kind: str
    msg: Dict[str, Any]
    product: Optional[str] = None
    seq: Optional[int] = None


class SendRecord(NamedTuple):
    """One book frame as it left the simulator (``t_send_ms``: wall clock, epoch ms,
    taken just before the write so it can be joined with a pipeline's output)."""

    venue: str
    product: str
    seq: Optional[int]
    t_send_ms: float


#: Receives a :class:`SendRecord` for every book frame sent; ``list.append`` will do.
SendLog = Callable[[SendRecord], None]

#: Replaces one stamped frame by the frames to send in its place (see module doc).
FrameFilter = Callable[[OutFrame], Awaitable[Sequence[OutFrame]]]

#: Builds the filter for one connection from ``(venue, connection_number)``, or None
#: to send that connection's frames unchanged.
FilterFactory = Callable[[str, int], Optional[FrameFilter]]


class Outbox:
    """Serialises one connection's sends; see the module docstring for the steps."""

    def __init__(self, ws: ServerConnection, venue: str, *,
                 stamp: Callable[[OutFrame], None],
                 frame_filter: Optional[FrameFilter] = None,
                 send_log: Optional[SendLog] = None) -> None:
        self._ws = ws
        self._venue = venue
        self._stamp = stamp
        self._filter = frame_filter
        self._send_log = send_log
        self._lock = asyncio.Lock()

    async def send(self, frame: OutFrame) -> None:
        """Stamp, filter and write one frame. Frames are written in the order
        ``send`` was called: the lock is FIFO and is queued for synchronously."""
        async with self._lock:
            self._stamp(frame)
            frames = [frame] if self._filter is None else await self._filter(frame)
            for out in frames:
                data = orjson.dumps(out.msg)
                t_send_ms = time.time() * 1000.0
                await self._ws.send(data, text=True)
                if out.kind == BOOK and self._send_log is not None:
                    self._send_log(SendRecord(self._venue, out.product or "", out.seq, t_send_ms))

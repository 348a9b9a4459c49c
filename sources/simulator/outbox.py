"""The single path every outgoing frame of one connection takes.

Everything a session sends (replies, heartbeats, book data) goes through
:meth:`Outbox.send`, in this order:

1. **stamp**: the venue fills in what belongs to the moment of sending (Coinbase's
   per-connection ``sequence_num`` and ``timestamp``, Deribit's ``usOut``). Doing
   it here, under the connection's send lock, is what makes ``sequence_num`` rise
   in exactly the order frames reach the wire, whichever task produced them.
2. **filter**: an optional :data:`FrameFilter` sees the stamped frame and returns
   the frames to put on the wire instead: none (drop), two (duplicate), an earlier
   held-back one (swap), an edited one (bad sizes), a new one, or a connection
   action (:data:`CLOSE`, :data:`ABORT`, :data:`PAUSE`). Stamping first means a
   dropped Coinbase frame leaves a ``sequence_num`` gap, just as a frame lost by
   the real exchange would; a frame the filter creates is stamped when it is
   written, so it takes the next ``sequence_num`` as a real message would.
3. **write**: serialise, send with websocket backpressure, and report book frames
   to the send log so benchmarks can measure end-to-end latency. Actions are
   carried out in their place in the list, so "frame N, then silence" is exact.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, NamedTuple, Optional, Sequence

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

#: Kinds of outgoing frame. Only ``BOOK`` frames are sent-logged; a fault filter can
#: use the kind to leave control traffic alone.
BOOK = "book"
DATA = "data"  # non-book market data (Coinbase ticker, market_trades)
HEARTBEAT = "heartbeat"
REPLY = "reply"  # answers to requests, including errors

#: Connection actions a filter can put among the frames (``msg`` holds the
#: arguments). CLOSE: close handshake with ``code`` and ``reason``. ABORT: drop the
#: TCP connection without a close frame, as a crashed server or a cut cable would.
#: PAUSE: send nothing for ``seconds``; unless ``pings``, stop reading too, so the
#: peer's pings go unanswered and the server's own keepalive pings stop.
CLOSE = "close"
ABORT = "abort"
PAUSE = "pause"
ACTIONS = frozenset((CLOSE, ABORT, PAUSE))


@dataclass
class OutFrame:
    """One message about to be sent, still as a dict so stamps and filters can
    edit it; serialised only at the last moment.

    ``seq`` identifies a book frame in the send log: the Coinbase ``sequence_num``
    (known only once stamped) or the Deribit ``change_id``. ``raw``, if set, is
    sent verbatim instead of ``msg`` (an injected frame that is not JSON).
    ``stamped`` is set by the outbox, so a frame sent twice is stamped once.
    ``recorded_time`` is the recorded envelope time of the message it replays
    (for the venue's stamp to send again, moved), if any.
    """

    kind: str
    msg: Dict[str, Any]
    product: Optional[str] = None
    seq: Optional[int] = None
    raw: Optional[str] = None
    stamped: bool = False
    recorded_time: Any = None


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
            frame.stamped = True
            frames = [frame] if self._filter is None else await self._filter(frame)
            for out in frames:
                if out.kind in ACTIONS:
                    if not await self._act(out):
                        return
                    continue
                if not out.stamped:
                    self._stamp(out)
                    out.stamped = True
                data = orjson.dumps(out.msg) if out.raw is None else out.raw
                t_send_ms = time.time() * 1000.0
                await self._ws.send(data, text=True)
                if out.kind == BOOK and self._send_log is not None:
                    self._send_log(SendRecord(self._venue, out.product or "", out.seq, t_send_ms))

    async def _act(self, action: OutFrame) -> bool:
        """Carry out a connection action; False if the connection is finished."""
        args = action.msg
        if action.kind == CLOSE:
            await self._ws.close(args["code"], args["reason"])
            return False
        if action.kind == ABORT:
            self._ws.transport.abort()
            return False
        await self._pause(args["seconds"], args["pings"])
        return True

    async def _pause(self, seconds: float, pings: bool) -> None:
        """Hold the send lock for ``seconds``. websockets answers pings as it reads,
        so silencing them means not reading at all (the peer's messages wait in
        the socket buffer until the pause ends)."""
        if pings:
            await asyncio.sleep(seconds)
            return
        ws = self._ws
        transport = ws.transport
        reading = transport.is_reading()  # False if backpressure paused it already
        if reading:
            transport.pause_reading()
        keepalive = ws.keepalive_task
        if keepalive is not None:
            keepalive.cancel()
        try:
            await asyncio.sleep(seconds)
        finally:
            if reading and not transport.is_closing():
                transport.resume_reading()
            if keepalive is not None and ws.state is State.OPEN:
                ws.start_keepalive()

"""Per-connection replay: one cursor per subscribed product, merged and paced.

A :class:`ProductStream` is one product's replay on one connection. It keeps its
cursor and the book as sent so far for as long as the connection lives, even while
unsubscribed: lobstream resyncs a product by unsubscribing and subscribing again,
and the answer must be a fresh snapshot of the book at the point the client
stopped, followed by the recorded updates from there on (a replay from the start
would hand the client data it has already seen). While unsubscribed the cursor
does not move, so the snapshot equals exactly what the client has received.

:class:`Replay` drives all streams of a connection: it always sends the frame
recorded earliest among the subscribed products, so a connection sees products
interleaved as they were recorded.

A stream sends payloads in *recorded* time and names; its ``adapt`` step (the
venue's: exchange clock, cloned names) turns each into what goes on the wire, so
generated snapshots and recorded frames are moved alike.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, List, Optional, Sequence

from sources.simulator.recording import RecordedFrame
from sources.simulator.outbox import OutFrame, Outbox
from sources.simulator.pacing import Pacer

#: The replay yields to the event loop after this many frames sent without a
#: wait: often enough that heartbeats and requests wait well under a millisecond,
#: rarely enough that yielding costs little (yielding after every frame halves
#: throughput). Unpaced it never waits; paced it stops waiting once it falls
#: behind the recorded pace (50 cloned Binance books at speed 5 did, and
#: starved the REST depth requests for 14 s).
YIELD_EVERY = 32

#: Turns a payload as recorded into the payload sent (see the module docstring).
Adapt = Callable[[Dict[str, Any]], Dict[str, Any]]


class SentBook:
    """Price → size per side, as the connection has been sent it. Keys and values
    stay as recorded (Coinbase strings, Deribit numbers) so a generated snapshot
    quotes the recording exactly."""

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids: Dict[Any, Any] = {}
        self.asks: Dict[Any, Any] = {}

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()


class ProductStream:
    """One product's replay on one connection. Venues subclass it to say how a
    payload changes the book (:meth:`apply`), what a snapshot of the book looks
    like (:meth:`snapshot`) and how a payload is wrapped for sending (:meth:`render`)."""

    #: Whether a resubscribe is answered with a generated snapshot; streams
    #: without a book (tickers, trades) just carry on where they paused.
    resyncs = False

    def __init__(self, product: str, frames: Sequence[RecordedFrame],
                 adapt: Optional[Adapt] = None) -> None:
        self.product = product
        self.active = True
        self._frames = frames
        self._adapt = adapt
        self._pos = 0
        self._resync = False
        self._ended = False

    @property
    def position(self) -> int:
        """How many recorded frames have been taken (sent or about to be)."""
        return self._pos

    @property
    def exhausted(self) -> bool:
        return self._ended or (not self._resync and self._pos >= len(self._frames))

    def end(self) -> None:
        """The product was delisted: nothing more is sent, for good."""
        self._ended = True

    def next_ts(self) -> Optional[float]:
        """Recorded time of the next frame; None when a resync snapshot is due,
        which goes out at once rather than at any recorded pace."""
        return None if self._resync else self._frames[self._pos].ts

    def pause(self) -> None:
        self.active = False
        self._resync = False

    def resume(self) -> None:
        """Subscribed again: if anything was sent, answer with a fresh snapshot."""
        self.active = True
        self._resync = self.resyncs and self._pos > 0

    def take(self) -> OutFrame:
        """The next frame to send, with the book moved past it."""
        recorded_time = None
        if self._resync:
            self._resync = False
            payload = self.snapshot()
        else:
            frame = self._frames[self._pos]
            payload, recorded_time = frame.payload, frame.envelope_time
            self._pos += 1
            self.apply(payload)
        out = self.render(payload if self._adapt is None else self._adapt(payload))
        out.recorded_time = recorded_time
        return out

    def apply(self, payload: Dict[str, Any]) -> None:
        """Move the tracked book past one recorded payload (default: no book)."""

    def snapshot(self) -> Dict[str, Any]:
        """A snapshot payload of the current book (only if :attr:`resyncs`)."""
        raise NotImplementedError

    def render(self, payload: Dict[str, Any]) -> OutFrame:
        raise NotImplementedError


class Replay:
    """Sends a connection's streams in recorded order, at the pacer's speed.

    ``ended(product)`` says whether a product has been delisted (its stream then
    ends); :attr:`reached` is the recorded time of the latest recorded frame sent,
    the connection's exchange clock.
    """

    def __init__(self, outbox: Outbox, pacer: Pacer,
                 ended: Optional[Callable[[str], bool]] = None) -> None:
        self._outbox = outbox
        self._pacer = pacer
        self._ended = ended
        self._streams: List[ProductStream] = []
        self._wake = asyncio.Event()
        self.reached: Optional[float] = None

    def add(self, stream: ProductStream) -> None:
        """Take on a newly subscribed stream; it stays for the connection's life."""
        self._streams.append(stream)
        self.wake()

    def wake(self) -> None:
        """Re-plan now: call after any change to which streams are active."""
        self._wake.set()

    @property
    def finished(self) -> bool:
        """Everything the connection ever subscribed has been sent."""
        return bool(self._streams) and all(s.exhausted for s in self._streams)

    def _next(self) -> Optional[ProductStream]:
        best: Optional[ProductStream] = None
        best_ts = 0.0
        for stream in self._streams:
            if not stream.active or stream.exhausted:
                continue
            if self._ended is not None and self._ended(stream.product):
                stream.end()
                continue
            ts = stream.next_ts()
            if ts is None:
                return stream
            if best is None or ts < best_ts:
                best, best_ts = stream, ts
        return best

    async def run(self) -> None:
        """Send until :attr:`finished`. When it has no wait (unpaced, or behind
        the pace) it still yields to the event loop regularly (a send only yields
        when the socket buffer is full) so heartbeats and requests are served
        meanwhile."""
        sent = 0
        while not self.finished:
            self._wake.clear()
            stream = self._next()
            if stream is None:
                if not self.finished:  # _next may just have ended the last streams
                    await self._wake.wait()
                continue
            ts = stream.next_ts()
            if ts is not None:
                delay = self._pacer.delay(ts)
                if delay > 0:
                    await self._sleep(delay)
                    continue  # subscriptions may have changed meanwhile
                self._pacer.sent()
                self.reached = ts if self.reached is None else max(self.reached, ts)
            # take() and the send's lock request happen without yielding in
            # between, so a resubscribe can never slip between them.
            await self._outbox.send(stream.take())
            sent += 1
            if sent % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def _sleep(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass

"""What every simulated connection has in common, whatever the venue.

A session owns the connection's :class:`~sources.simulator.outbox.Outbox` (the one
send path) and :class:`~sources.simulator.stream.Replay`, runs the receive loop,
and keeps its background tasks (replay, heartbeats, deadlines) tied to the
connection's lifetime. Venues subclass it and implement :meth:`handle`.

It also gives the venue what every venue needs: server time (:meth:`now`), the
connection's exchange clock (:meth:`recorded_now`, moved by :attr:`clock`), the
instruments (:attr:`universe`), the client message-rate limit (:meth:`allowed`)
and the stats.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Coroutine, Dict, List, Optional, Sequence, Set, Union

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from sources.simulator.context import ServerContext
from sources.simulator.outbox import OutFrame, Outbox
from sources.simulator.pacing import Pacer
from sources.simulator.stream import Replay

if TYPE_CHECKING:
    from sources.simulator.faults import SubscribeError


class Session:
    """One client connection. ``number`` counts connections per server, so a
    fault filter can tell connections apart."""

    venue = ""
    #: Close connections that have not subscribed within ``subscribe_timeout``, as
    #: both Coinbase feeds do (they call :meth:`subscribed` on a good subscribe).
    subscribe_deadline = False

    def __init__(self, ws: ServerConnection, ctx: ServerContext, number: int) -> None:
        self.ws = ws
        self.ctx = ctx
        self.number = number
        state = ctx.venues[self.venue]
        self.clock = state.clock
        self.universe = state.universe
        self._book_start = state.book_start
        address = ws.remote_address
        self.ip = str(address[0]) if address else ""
        factory = ctx.frame_filters
        self.outbox = Outbox(ws, self.venue, stamp=self.stamp,
                             frame_filter=factory(self.venue, number) if factory else None,
                             send_log=ctx.send_log)
        self._loop = asyncio.get_running_loop()
        pacer = Pacer(self._loop.time, speed=ctx.config.speed, rate=ctx.config.rate,
                      origin_ts=state.book_start)
        self.replay = Replay(self.outbox, pacer,
                             ended=self._delisted if self.universe.has_delistings else None)
        self._tasks: Set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()

    def now(self) -> float:
        """Seconds since the server started (the instrument schedule's clock)."""
        return self._loop.time() - self.ctx.started

    def recorded_now(self) -> float:
        """The connection's exchange clock, in recorded epoch ms: the recorded time
        of the latest recorded frame sent, or of the venue's first book frame
        before any (the wall clock for a venue with no recording). Times the
        venue makes up (envelopes, heartbeats) are this, moved by :attr:`clock`."""
        for ts in (self.replay.reached, self._book_start):
            if ts is not None:
                return ts
        return time.time() * 1000.0

    def unknown(self, products: Sequence[str]) -> List[str]:
        """Those of ``products`` that cannot be subscribed now: unknown to the
        venue, not listed yet or any more, or listed without a recorded book (and
        ``clone_books`` off)."""
        now = self.now()
        return [p for p in products if self.universe.source(p, now) is None]

    def _delisted(self, product: str) -> bool:
        return self.universe.delisted(product, self.now())

    def allowed(self) -> bool:
        """Count one rate-limited client message; False if it is over the limit."""
        return self.ctx.limiter.message(self.venue, self.ip)

    def count_subscribe(self, size: int) -> None:
        """Note a subscribe request naming ``size`` channels or products."""
        self.ctx.stats.subscribe(self.venue, size)

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        self.spawn(self._replay())
        if self.subscribe_deadline:
            self.spawn(self._close_unless_subscribed())
        try:
            async for message in self.ws:
                await self.handle(message)
        except ConnectionClosed:
            pass
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.closed()

    def closed(self) -> None:
        """Hook: the connection is over (release what the venue shares)."""

    def spawn(self, coro: Coroutine[None, None, None]) -> "asyncio.Task[None]":
        """Run ``coro`` for as long as the connection lives."""
        task = asyncio.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guard(coro: Coroutine[None, None, None]) -> None:
        try:
            await coro
        except ConnectionClosed:
            pass  # the receive loop sees the close too and ends the session

    def subscribed(self) -> None:
        """The client subscribed to something: the subscribe deadline is met."""
        self._subscribed.set()

    async def _close_unless_subscribed(self) -> None:
        try:
            await asyncio.wait_for(self._subscribed.wait(), self.ctx.config.subscribe_timeout)
        except TimeoutError:
            await self.ws.close(1008, "no subscribe message received in time")

    async def _replay(self) -> None:
        await self.replay.run()
        await self.ws.close(1000, "end of recording")

    async def send(self, kind: str, msg: Dict[str, Any]) -> None:
        await self.outbox.send(OutFrame(kind, msg))

    def subscribe_error(self, product: str) -> Optional["SubscribeError"]:
        """The error a fault plan wants this subscribe of ``product`` refused with;
        venues call it for every product a subscribe request names."""
        faults = self.ctx.faults
        return None if faults is None else faults.subscribe_error(self.venue, self.number, product)

    def stamp(self, frame: OutFrame) -> None:
        """Hook: fill in send-time fields (see :mod:`sources.simulator.outbox`)."""

    async def handle(self, message: Union[str, bytes]) -> None:
        """Answer one client message."""
        raise NotImplementedError

"""What every simulated connection has in common, whatever the venue.

A session owns the connection's :class:`~sources.simulator.outbox.Outbox` (the one
send path) and :class:`~sources.simulator.stream.Replay`, runs the receive loop,
and keeps its background tasks (replay, heartbeats, deadlines) tied to the
connection's lifetime. Venues subclass it and implement :meth:`handle`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Coroutine, Dict, Optional, Set, Union

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
        factory = ctx.frame_filters
        self.outbox = Outbox(ws, self.venue, stamp=self.stamp,
                             frame_filter=factory(self.venue, number) if factory else None,
                             send_log=ctx.send_log)
        loop = asyncio.get_running_loop()
        pacer = Pacer(loop.time, speed=ctx.config.speed, rate=ctx.config.rate,
                      origin_ts=ctx.recording.book_start(self.venue))
        self.replay = Replay(self.outbox, pacer)
        self._tasks: Set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()

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

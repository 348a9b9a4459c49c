"""Live exchange input: each worker opens its own connections, many products on each.

The unit of parallelism is the connection. :func:`~sources.runtime.placement.
plan_connections` decides, from the configuration and the worker count alone,
which worker opens which connection and which routing key each product gets, so
that Bytewax sends every product's events to the worker that owns its socket.
That is why this is a ``DynamicSource``: its ``build`` learns the worker index,
and each worker builds exactly its own connections.

On each worker one daemon thread runs an asyncio loop with all of that worker's
connections (one open file per connection, not several), timestamps frames and
puts them in a bounded :class:`~sources.transport.inbox.Inbox`; ``next_batch``
drains it through each connection's :class:`~sources.feed.feed.Feed` and never
waits. (Bytewax's ``batch_async`` helper instead blocks the worker for its whole
timeout and only services the socket while it runs.)

Delivery: a live feed has no replayable position. The source keeps no resume
state; after a restart every book waits for the fresh snapshot its new
subscription brings, and nothing from before the restart is replayed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime
from typing import Callable, Dict, List, Optional, Set, Tuple

from bytewax.inputs import DynamicSource, StatelessSourcePartition

from sources.feed.feed import Feed, Keyed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.runtime import shutdown
from sources.runtime.placement import ConnectionPlan, routing_key
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.transport.connection import Connection, Recorder
from sources.transport.inbox import (Connected, Disconnected, Ended, Frame, Inbox, Overflowed,
                                     RestFailed, RestReply)
from sources.transport.limits import TokenBucket
from sources.transport.ratelimit import RateLimit
from sources.transport.rest import HostLimits, RestClient, RestError

log = logging.getLogger("lobstream.websocket")

#: Plans the flow's connections for a given worker count.
Planner = Callable[[int], List[ConnectionPlan]]
#: Makes the recorder of one connection stream (None: not recording).
RecorderFactory = Callable[[str, str, str], Recorder]
#: Makes each connection's feed; called like :class:`Feed`.
FeedFactory = Callable[..., Feed]

#: Feeds are ticked (overdue snapshots retried) at most this often, in ms.
TICK_MS = 1000.0


class WebsocketSource(DynamicSource[Keyed]):
    """Book events from the planned connections; see the module docstring.

    ``exit_on_close``: end a connection when the server closes it normally (code
    1000) instead of reconnecting. Live exchanges never do that on purpose; the
    local simulator does at the end of a recording, which is how an offline run
    finishes by itself. ``queue_frames``/``queue_bytes`` bound each worker's
    inbox. ``feed_factory`` makes each connection's feed (a subclass may do more
    with what it is handed, as the Kafka capture does: :mod:`sources.kafka.tap`).
    """

    def __init__(self, planner: Planner, *, resync: ResyncRequests, registry: Registry,
                 exit_on_close: bool = False, silence_timeout: float = 30.0,
                 recorder: Optional[RecorderFactory] = None, batch_size: int = 1000,
                 queue_frames: int = 100_000, queue_bytes: int = 256 * 2**20,
                 clock_ms: float = 0.0, feed_factory: FeedFactory = Feed) -> None:
        self.planner = planner
        self.resync = resync
        self.registry = registry
        self.exit_on_close = exit_on_close
        self.silence_timeout = silence_timeout
        self.recorder = recorder
        self.batch_size = batch_size
        self.queue_frames = queue_frames
        self.queue_bytes = queue_bytes
        self.clock_ms = clock_ms
        self.feed_factory = feed_factory
        self.bad = BadInput()
        self.errors = ErrorReplies()

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> "_WorkerPartition":
        plans = [p for p in self.planner(worker_count) if p.worker == worker_index]
        return _WorkerPartition(self, plans, worker_index, worker_count)


class _WorkerPartition(StatelessSourcePartition[Keyed]):
    """All connections of one worker: their feeds here, their sockets on a thread."""

    def __init__(self, source: WebsocketSource, plans: List[ConnectionPlan],
                 worker: int, workers: int) -> None:
        self._source = source
        self._batch_size = source.batch_size
        self._inbox = Inbox(source.queue_frames, source.queue_bytes)
        source.registry.add_inbox(self._inbox)
        self._feeds: List[Feed] = []
        self._owned: Set[Tuple[str, str]] = set()
        for plan in plans:
            keys = dict(plan.keys)
            name = plan.venue.name

            def key(product: str, keys: Dict[str, str] = keys, name: str = name) -> str:
                return keys.get(product) or routing_key(name, product, worker, workers)

            feed = source.feed_factory(plan.venue, plan.products, source.bad, plan.stream,
                                       settings=plan.settings, key=key, errors=source.errors,
                                       clock_ms=source.clock_ms)
            source.registry.add_feed(feed)
            self._feeds.append(feed)
            self._owned.update((name, p) for p in plan.products)
        self._thread = _SocketThread(source, plans, self._inbox, worker, workers)
        self._ended: Set[int] = set()
        self._refused_all: Set[int] = set()
        self._next_tick = 0.0
        if not plans:
            log.info("worker %d has no connections to open", worker)

    def next_batch(self) -> List[Keyed]:
        if shutdown.requested() or len(self._ended) == len(self._feeds):
            raise StopIteration()
        if not self._thread.started:
            self._thread.start()  # lazily: Bytewax may build a partition it then discards
        out: List[Keyed] = []
        feeds = self._feeds
        for item in self._inbox.take(self._batch_size):
            kind = type(item)
            if kind is Frame:
                feeds[item.conn].on_frame(item.raw, item.ts, out)
            elif kind is Connected:
                self._thread.send(item.conn, feeds[item.conn].connected(item.ts))
            elif kind is Disconnected:
                out.extend(feeds[item.conn].disconnected(item.ts, item.reason))
            elif kind is Overflowed:
                log.warning("%s: the dataflow fell behind; %d frames dropped, resyncing its "
                            "books", feeds[item.conn].stream, item.dropped)
                feeds[item.conn].overflow(item.ts, item.dropped, out)
            elif kind is RestReply:
                feeds[item.conn].on_rest(item.url, item.raw, item.ts, out)
            elif kind is RestFailed:
                feeds[item.conn].rest_failed(item.product, time.time() * 1000.0)
            elif kind is Ended:
                self._ended.add(item.conn)
        now = time.time() * 1000.0
        for venue, product, reason, detail in self._source.resync.take(self._owned):
            for feed in feeds:
                if feed.venue.name == venue and product in feed.books:
                    feed.resync(product, now, reason, detail, out)
        if now >= self._next_tick:
            self._next_tick = now + TICK_MS
            for feed in feeds:
                feed.tick(now)
        for conn, feed in enumerate(feeds):
            if feed.outbox:
                self._thread.send(conn, feed.outbox)
                feed.outbox = []
            if feed.requests:
                for product in feed.requests:
                    self._thread.fetch(conn, product)
                feed.requests = []
            if feed.reconnect:
                feed.reconnect = False
                self._thread.reconnect(conn)
            if conn not in self._refused_all and feed.books and not feed.wanted:
                # The exchange refused everything this connection is for; retrying can
                # only end in a reconnect loop, so the connection ends (others go on).
                self._refused_all.add(conn)
                self._thread.stop(conn)
        return out

    def next_awake(self) -> Optional[datetime]:
        return None

    def close(self) -> None:
        self._thread.stop_all()


class _SocketThread(threading.Thread):
    """The worker's asyncio loop running every one of its connections."""

    def __init__(self, source: WebsocketSource, plans: List[ConnectionPlan], inbox: Inbox,
                 worker: int, workers: int) -> None:
        super().__init__(name=f"lobstream-sockets-{worker}", daemon=True)
        self._plans = plans
        self._source = source
        self._inbox = inbox
        self._workers = workers
        self.started = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._connections: List[Connection] = []
        self._rest: RestClient
        self._ready = threading.Event()

    def start(self) -> None:
        self.started = True
        super().start()
        self._ready.wait(10.0)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._rest = RestClient()
        source = self._source
        limiters: Dict[str, TokenBucket] = {}
        for index, plan in enumerate(self._plans):
            venue = plan.venue
            if venue.name not in limiters:
                # Every worker opens connections at the same time from the same
                # host: each takes its share of the venue's connection rate.
                limiters[venue.name] = TokenBucket(
                    venue.limits.connects_per_second / max(1, self._workers), burst=1.0)
            recorder = source.recorder(venue.name, plan.stream, plan.url) \
                if source.recorder is not None else None
            self._connections.append(Connection(
                index, venue.name, plan.url, plan.stream, self._inbox,
                connects=limiters[venue.name],
                messages_per_second=venue.limits.messages_per_second,
                exit_on_close=source.exit_on_close, silence_timeout=source.silence_timeout,
                recorder=recorder, max_lifetime=venue.max_lifetime))
            if venue.rest_snapshots:
                rest_url = str(plan.settings.get("rest_url", ""))
                # Half the venue's weight budget, shared by this host's workers.
                budget = max(1, int(venue.limits.rest_weight_per_minute / 2 / self._workers))
                self._rest.configure(rest_url, HostLimits(rate=RateLimit(budget, 60.0)))
        self._ready.set()
        try:
            await asyncio.gather(*(c.run() for c in self._connections))
        finally:
            await self._rest.close()
            for c in self._connections:
                if c.recorder is not None:
                    c.recorder.close()

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop closed meanwhile: the connections ended for good

    def send(self, conn: int, messages: List[dict]) -> None:
        if messages and conn < len(self._connections):
            self._call(self._connections[conn].send, list(messages))

    def fetch(self, conn: int, product: str) -> None:
        """Fetch ``product``'s REST snapshot for connection ``conn``; the reply (or
        the failure) comes back through the inbox."""
        if conn < len(self._plans):
            self._call(self._start_fetch, conn, product)

    def _start_fetch(self, conn: int, product: str) -> None:
        asyncio.ensure_future(self._fetch(conn, product))

    async def _fetch(self, conn: int, product: str) -> None:
        plan = self._plans[conn]
        venue = plan.venue
        assert venue.snapshot_request is not None
        url, weight = venue.snapshot_request(str(plan.settings.get("rest_url", "")), product,
                                             plan.settings)
        try:
            reply = await self._rest.get(url, weight=weight)
        except RestError as ex:
            log.warning("%s: snapshot of %s failed: %s", plan.stream, product, ex)
            self._inbox.put(RestFailed(conn, product))
            return
        ts = time.time() * 1000.0
        recorder = self._connections[conn].recorder
        if recorder is not None:
            recorder.write(ts, venue.name, plan.stream, reply.body, "rest", url)
        self._inbox.put(RestReply(conn, url, reply.body, ts))

    def reconnect(self, conn: int) -> None:
        if conn < len(self._connections):
            self._call(self._connections[conn].reconnect)

    def stop(self, conn: int) -> None:
        if conn < len(self._connections):
            self._call(self._connections[conn].stop)

    def stop_all(self) -> None:
        for c in self._connections:
            self._call(c.stop)

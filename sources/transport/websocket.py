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
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from bytewax.inputs import DynamicSource, StatelessSourcePartition

from sources.feed.feed import Feed, Keyed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.runtime import shutdown
from sources.runtime.placement import (ConnectionPlan, chunks, home_worker, routing_key,
                                       stream_name)
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.transport.connection import Connection, Recorder
from sources.instruments.universe import Refresher, VenueUniverse
from sources.transport.inbox import (Connected, Disconnected, Ended, Frame, Inbox, Overflowed,
                                     RestFailed, RestReply, UniverseChanged)
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
#: REST snapshot requests this thread hands the REST client at once; the rest wait
#: here (at most one per product). The client refuses more than 36 pending per
#: host, and 50 Binance symbols subscribed together had 14 refused, each then
#: waiting 15 s for its retry timer; the client's own limits still pace them.
FETCHES_AT_ONCE = 16


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
                 clock_ms: float = 0.0, feed_factory: FeedFactory = Feed,
                 universes: Sequence[VenueUniverse] = ()) -> None:
        self.planner = planner
        #: Venues whose products are re-resolved while running (``refresh`` > 0).
        self.universes = [u for u in universes if u.refresh > 0]
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
        everything = self.planner(worker_count)
        plans = [p for p in everything if p.worker == worker_index]
        return _WorkerPartition(self, everything, plans, worker_index, worker_count)


class _WorkerPartition(StatelessSourcePartition[Keyed]):
    """All connections of one worker: their feeds here, their sockets on a thread."""

    def __init__(self, source: WebsocketSource, everything: List[ConnectionPlan],
                 plans: List[ConnectionPlan], worker: int, workers: int) -> None:
        self._source = source
        #: One plan per venue to copy for connections opened later (URL, settings).
        self._templates = {p.venue.name: p for p in everything}
        #: This worker's own re-resolution of each venue's products (every worker
        #: decides alike from the same listing).
        refreshers = [Refresher(u, [p for plan in everything if plan.venue.name == u.venue
                                    for p in plan.products]) for u in source.universes]
        self._batch_size = source.batch_size
        self._inbox = Inbox(source.queue_frames, source.queue_bytes)
        source.registry.add_inbox(self._inbox)
        self._worker, self._workers = worker, workers
        self._feeds: List[Feed] = []
        self._plans: List[ConnectionPlan] = []
        self._owned: Set[Tuple[str, str]] = set()
        for plan in plans:
            self._feed(plan)
        self._thread = _SocketThread(source, plans, self._inbox, worker, workers, refreshers)
        self._ended: Set[int] = set()
        self._refused_all: Set[int] = set()
        self._next_tick = 0.0
        #: With a re-resolved universe the partition lives on without connections:
        #: products may join later.
        self._lasting = bool(refreshers) and not source.exit_on_close
        products = sorted(f"{p.venue.name}:{x}" for p in plans for x in p.products)
        log.info("worker %d of %d opens %d connections for %d products: %s", worker, workers,
                 len(plans), len(products), " ".join(products[:50])
                 + (" ..." if len(products) > 50 else ""))

    def _feed(self, plan: ConnectionPlan) -> Feed:
        keys = dict(plan.keys)
        name, worker, workers = plan.venue.name, self._worker, self._workers

        def key(product: str) -> str:
            return keys.get(product) or routing_key(name, product, worker, workers)

        source = self._source
        feed = source.feed_factory(plan.venue, plan.products, source.bad, plan.stream,
                                   settings=plan.settings, key=key, errors=source.errors,
                                   clock_ms=source.clock_ms)
        source.registry.add_feed(feed)
        self._feeds.append(feed)
        self._plans.append(plan)
        self._owned.update((name, p) for p in plan.products)
        return feed

    def _universe_changed(self, change: "UniverseChanged", out: List[Keyed]) -> None:
        """Follow the venue's new listings that live here and drop the delisted."""
        now = time.time() * 1000.0
        venue = change.venue
        for conn, feed in enumerate(self._feeds):
            if feed.venue.name == venue:
                gone = [p for p in change.removed if p in feed.books]
                if gone:
                    self._thread.send(conn, feed.remove(gone, now, "delisted", out))
                    self._owned.difference_update((venue, p) for p in gone)
        mine = [p for p in change.added if home_worker(venue, p, self._workers) == self._worker]
        for conn, feed in enumerate(self._feeds):
            if not mine or feed.venue.name != venue or conn in self._ended:
                continue
            room = self._plans[conn].capacity - len(feed.books)
            take, mine = mine[:max(0, room)], mine[max(0, room):]
            if take:
                self._thread.send(conn, feed.add(take, now))
                self._owned.update((venue, p) for p in take)
        if mine:
            template = self._templates.get(venue)
            if template is None:
                return
            for chunk in chunks(mine, template.capacity):
                keys = {p: routing_key(venue, p, self._worker, self._workers) for p in chunk}
                plan = template._replace(stream=stream_name(venue, chunk), products=tuple(chunk),
                                         worker=self._worker, keys=keys)
                self._feed(plan)
                self._thread.add(plan)

    def next_batch(self) -> List[Keyed]:
        if shutdown.requested() or (len(self._ended) == len(self._feeds) and not self._lasting):
            stops = shutdown.farewell(self._worker, self._workers)
            if stops:
                return stops  # type: ignore[return-value]  # (the other processes stop too)
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
            elif kind is UniverseChanged:
                self._universe_changed(item, out)
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
            if conn not in self._refused_all and feed.books and not feed.wanted \
                    and conn not in self._ended:
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
    """The worker's asyncio loop running every one of its connections (and, when
    the product universe is re-resolved, the periodic instrument refreshes).

    Every call from the worker thread is handed to the loop in order
    (``call_soon_threadsafe`` is FIFO), so a connection added by :meth:`add` exists
    by the time a later :meth:`send` for it runs."""

    def __init__(self, source: WebsocketSource, plans: List[ConnectionPlan], inbox: Inbox,
                 worker: int, workers: int, refreshers: Sequence[Refresher] = ()) -> None:
        super().__init__(name=f"lobstream-sockets-{worker}", daemon=True)
        self._initial = list(plans)
        self._refreshers = list(refreshers)
        self._plans: List[ConnectionPlan] = []
        self._source = source
        self._inbox = inbox
        self._workers = workers
        self.started = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._connections: List[Connection] = []
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._limiters: Dict[str, TokenBucket] = {}
        self._rest: RestClient
        self._fetch_slots: asyncio.Semaphore
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
        self._fetch_slots = asyncio.Semaphore(FETCHES_AT_ONCE)
        for plan in self._initial:
            self._add(plan)
        refreshes = [asyncio.ensure_future(self._refresh(r)) for r in self._refreshers]
        self._ready.set()
        try:
            while self._tasks:
                done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                self._tasks -= done
        finally:
            for task in refreshes:
                task.cancel()
            await self._rest.close()
            for c in self._connections:
                if c.recorder is not None:
                    c.recorder.close()

    def _add(self, plan: ConnectionPlan) -> None:
        """Create and start the connection of ``plan`` (its index is the next one)."""
        source, venue = self._source, plan.venue
        if venue.name not in self._limiters:
            # Every worker opens connections at the same time from the same host:
            # each takes its share of the venue's connection rate.
            self._limiters[venue.name] = TokenBucket(
                venue.limits.connects_per_second / max(1, self._workers), burst=1.0)
        if venue.rest_snapshots:
            # Half the venue's weight budget, shared by this host's workers.
            budget = max(1, int(venue.limits.rest_weight_per_minute / 2 / self._workers))
            self._rest.configure(plan.rest_url, HostLimits(rate=RateLimit(budget, 60.0)))
        recorder = source.recorder(venue.name, plan.stream, plan.url) \
            if source.recorder is not None else None
        conn = Connection(len(self._connections), venue.name, plan.url, plan.stream,
                          self._inbox, connects=self._limiters[venue.name],
                          messages_per_second=venue.limits.messages_per_second,
                          exit_on_close=source.exit_on_close,
                          silence_timeout=source.silence_timeout, recorder=recorder,
                          max_lifetime=venue.max_lifetime)
        self._plans.append(plan)
        self._connections.append(conn)
        self._tasks.add(asyncio.ensure_future(conn.run()))

    async def _refresh(self, refresher: Refresher) -> None:
        """Re-resolve one venue's products every ``refresh`` seconds; changes go to
        the partition through the inbox."""
        while True:
            await asyncio.sleep(refresher.universe.refresh)
            added, removed = await refresher.changes(self._rest)
            if added or removed:
                self._inbox.put(UniverseChanged(refresher.universe.venue, added, removed))

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop closed meanwhile: the connections ended for good

    def add(self, plan: ConnectionPlan) -> None:
        """Open one more connection (products that joined a running flow)."""
        self._call(self._add, plan)

    def send(self, conn: int, messages: List[dict]) -> None:
        if messages:
            self._call(self._send, conn, list(messages))

    def _send(self, conn: int, messages: List[dict]) -> None:
        self._connections[conn].send(messages)

    def fetch(self, conn: int, product: str) -> None:
        """Fetch ``product``'s REST snapshot for connection ``conn``; the reply (or
        the failure) comes back through the inbox."""
        self._call(self._start_fetch, conn, product)

    def _start_fetch(self, conn: int, product: str) -> None:
        asyncio.ensure_future(self._fetch(conn, product))

    async def _fetch(self, conn: int, product: str) -> None:
        plan = self._plans[conn]
        venue = plan.venue
        assert venue.snapshot_request is not None
        url, weight = venue.snapshot_request(plan.rest_url, product, plan.settings)
        try:
            async with self._fetch_slots:
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
        self._call(self._reconnect, conn)

    def _reconnect(self, conn: int) -> None:
        self._connections[conn].reconnect()

    # (``Thread`` has a private ``_stop`` of its own: these names must not collide.)
    def stop(self, conn: int) -> None:
        self._call(self._end_connection, conn)

    def _end_connection(self, conn: int) -> None:
        self._connections[conn].stop()

    def stop_all(self) -> None:
        self._call(self._end_connections)

    def _end_connections(self) -> None:
        for c in self._connections:
            c.stop()

"""The simulator's server: one port, a websocket path and a REST prefix per venue.

A websocket handshake is routed by path to the venue's session, after the
venue's own check of the request (Binance's ``?streams=``), the fault plan's
refusals and the venue's connection caps (HTTP 429 beyond them, as the real
venues answer). Any other GET is REST (:mod:`sources.simulator.rest`):
websockets' ``process_request`` answers it before any upgrade is attempted.
Connections are :class:`CountedConnection`, so a session can see every frame a
client sends, pings and pongs included (Binance counts them all against its
message limit).
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import itertools
import math
import os
import time
from http import HTTPStatus
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple, Type
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event

from sources.simulator.candles import Prints, answer
from sources.simulator.clock import ExchangeClock, offset_ms
from sources.simulator.context import ServerContext, SimulatorConfig, VenueState
from sources.simulator.exchanges import EXCHANGES, VENUES, by_rest_path, by_ws_path, exchange
from sources.simulator.exchanges.base import SimulatedExchange
from sources.simulator.faults import HTTP_ERROR, STALE_SNAPSHOT, Fault, FaultPlan
from sources.simulator.limits import ClientLimiter, Limits, WeightBudget, override
from sources.simulator.outbox import FilterFactory, SendLog
from sources.simulator.recording import Recording
from sources.simulator.rest import RestReply, RestRequest, find_route, text_reply
from sources.simulator.session import Session
from sources.simulator.stats import SimulatorStats
from sources.simulator.universe import build_universe

#: Websocket path -> session. ``/ws/api/v2`` is Deribit's own path, so a client
#: configured with a real Deribit URL only needs its host changed.
ROUTES: Dict[str, Type[Session]] = {path: e.session for e in EXCHANGES for path in e.ws_paths}


def check_fault_venues(faults: Iterable[Fault]) -> None:
    """Raise ValueError for a fault scoped to a venue no path serves: it would
    silently never fire."""
    unknown = sorted({f.venue for f in faults if f.venue is not None} - set(VENUES))
    if unknown:
        raise ValueError(f"faults name unknown venues {unknown}; "
                         f"valid venues: {', '.join(VENUES)}")


def venue_limits(config: SimulatorConfig) -> Dict[str, Limits]:
    """Each venue's caps: its declared ones with the config's changes."""
    for venue in config.limits:
        exchange(venue)  # raises for an unknown venue
    return {e.venue: override(e.limits, config.limits.get(e.venue, {})) for e in EXCHANGES}


class CountedConnection(ServerConnection):
    """A server connection that shows each frame the client sends to
    :attr:`frame_hook` (its opcode) before handling it as usual."""

    frame_hook: Optional[Callable[[Opcode], None]] = None

    def process_event(self, event: Event) -> None:
        if self.frame_hook is not None and self.request is not None \
                and isinstance(event, Frame):
            self.frame_hook(event.opcode)
        super().process_event(event)


def _ip(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else ""
def check_api_keys(config: SimulatorConfig) -> None:
    """Raise ValueError for an API key a venue cannot have (unknown venue, wrong
    number of fields): its clients would fail to authenticate for no visible reason."""
    for venue, keys in config.api_keys.items():
        e = exchange(venue)
        for key in keys:
            problem = e.check_api_key(tuple(key))
            if problem is not None:
                raise ValueError(f"api key for {venue}: {problem}")


def _is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def _response(reply: RestReply) -> Response:
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                       ("Content-Length", str(len(reply.body))),
                       ("Content-Type", reply.content_type), *reply.headers])
    return Response(reply.status, HTTPStatus(reply.status).phrase, headers, reply.body)


def _retry_after(reply: RestReply, seconds: float) -> RestReply:
    return reply._replace(headers=reply.headers + (("Retry-After", str(math.ceil(seconds))),))


def _hint() -> str:
    ws = ", ".join([*ROUTES, *(p + "/<stream>" for e in EXCHANGES for p in e.ws_prefixes)])
    rest = ", ".join(e.rest_prefix + route.pattern for e in EXCHANGES for route in e.routes)
    return f"websockets: {ws}; REST: {rest}"


class SimulatorServer:
    """Serves a :class:`~sources.simulator.recording.Recording` on ``host:port``
    (port 0 picks a free one) from inside a running event loop.

    ``send_log`` is called with a :class:`~sources.simulator.outbox.SendRecord` per
    book frame sent; ``frame_filters`` plugs a per-connection
    :data:`~sources.simulator.outbox.FrameFilter` into every send path;
    ``faults`` injects a :class:`~sources.simulator.faults.FaultPlan` (its own
    frame filter, refused handshakes and subscribes, REST faults), so it excludes
    ``frame_filters``. ``candles`` (:func:`~sources.simulator.candles.load_prints`)
    makes the venues' candle endpoints answer too. :attr:`stats` counts what clients did.
    """

    def __init__(self, recording: Recording, *, host: str = "127.0.0.1", port: int = 0,
                 config: SimulatorConfig = SimulatorConfig(),
                 send_log: Optional[SendLog] = None,
                 frame_filters: Optional[FilterFactory] = None,
                 faults: Optional[FaultPlan] = None,
                 candles: Optional[Prints] = None) -> None:
        if faults is not None:
            if frame_filters is not None:
                raise ValueError("pass faults or frame_filters, not both")
            check_fault_venues(faults.faults)
        for listing in config.schedule:
            exchange(listing.venue)
        check_api_keys(config)
        self.recording = recording
        self.host = host
        self.config = config
        self.stats = SimulatorStats()
        self._limiter = ClientLimiter(venue_limits(config), self.stats)
        self._budget = WeightBudget(config.weight_window, self.stats)
        self._port = port
        self._send_log = send_log
        self._frame_filters = faults.frame_filter if faults is not None else frame_filters
        self.faults = faults
        self.candles = candles
        self._server: Optional[Server] = None
        self._ctx: Optional[ServerContext] = None
        self._numbers = itertools.count()
        self._watchers: Set["asyncio.Task[None]"] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ws://host:port``; append a venue's path (``/coinbase``, ``/deribit``...)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://host:port``; append a venue's REST prefix and its own path."""
        return f"http://{self.host}:{self.port}"

    def credentials_seen(self) -> List[str]:
        """Every token issued and signature accepted so far (see
        :attr:`~sources.simulator.context.ServerContext.credentials_seen`)."""
        return list(self._ctx.credentials_seen) if self._ctx is not None else []

    def clock(self, venue: str) -> ExchangeClock:
        """The exchange clock ``venue`` sends times on (fixed at start)."""
        if self._ctx is None:
            raise RuntimeError("server not started")
        return self._ctx.venues[exchange(venue).venue].clock

    async def start(self) -> int:
        """Build the instrument universes, fix the clocks, listen; return the port.
        Raises ValueError for a schedule naming an instrument nobody knows and
        OSError if the port cannot be had."""
        loop = asyncio.get_running_loop()
        started, started_ms = loop.time(), time.time() * 1000.0
        config = self.config
        venues = {}
        for e in EXCHANGES:
            book_start = e.book_start(self.recording)
            clock = ExchangeClock(offset_ms(book_start, started_ms, config.retime))
            universe = build_universe(
                e, self.recording, clock=clock, retime=config.retime, server_start_ms=started_ms,
                reference_dir=config.reference_dir, clone_books=config.clone_books,
                listings=config.schedule)
            shared = e.shared_state(self.recording, clock, self._limiter.limits(e.venue),
                                    self._history(e.venue), config.reference_dir)
            venues[e.venue] = VenueState(e, clock, universe, book_start, shared)
        self._ctx = ServerContext(self.recording, config, started, venues, self.stats,
                                  self._limiter, send_log=self._send_log,
                                  frame_filters=self._frame_filters, faults=self.faults)
        try:
            self._server = await serve(
                self._handle, self.host, self._port, process_request=self._process_request,
                compression="deflate" if config.compression else None,
                create_connection=CountedConnection)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno in errno.errorcode else str(exc)
            raise OSError(f"cannot listen on {self.host}:{self._port}: {reason}") from None
        return self.port

    def _history(self, venue: str) -> int:
        """The deepest stale snapshot the fault plan asks of ``venue``."""
        if self.faults is None:
            return 0
        return max((f.frames for f in self.faults.faults
                    if f.kind == STALE_SNAPSHOT and f.venue in (None, venue)), default=0)

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._watchers):
            task.cancel()

    async def _process_request(self, connection: ServerConnection,
                               request: Request) -> Optional[Response]:
        split = urlsplit(request.path)
        ip = _ip(connection)
        if not _is_upgrade(request):
            return await self._rest(request, ip)
        found = by_ws_path(split.path.rstrip("/") or "/")
        if found is None:
            return connection.respond(404, f"no venue at {request.path}; {_hint()}\n")
        bad = found.handshake_error(split.path, split.query)
        if bad is not None:
            return connection.respond(400, bad + "\n")
        if self.faults is not None:
            refused = self.faults.refusal(connection, found.venue)
            if refused is not None:
                return refused
        reason = self._limiter.admit(found.venue, ip)
        if reason is not None:
            return connection.respond(429, reason + "\n")
        # Counted open from here until the TCP connection is gone, whether the
        # handshake then succeeds or not.
        task = asyncio.create_task(self._release_when_closed(connection, found.venue, ip))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return None

    async def _release_when_closed(self, connection: ServerConnection, venue: str,
                                   ip: str) -> None:
        try:
            await connection.wait_closed()
        finally:
            self._limiter.release(venue, ip)

    async def _rest(self, request: Request, ip: str) -> Response:
        """Route a GET; charge its weight (where the venue has a budget), then
        answer it unless the budget or a fault says otherwise."""
        assert self._ctx is not None
        split = urlsplit(request.path)
        found = by_rest_path(split.path)
        if self.candles is not None:
            # Below a venue prefix, or at the venue's own path (a backfill's base
            # URL may be the bare server: every candle path names its venue).
            candle = answer(self.candles, found[1] if found is not None else split.path,
                            parse_qs(split.query))
            if candle is not None:
                return _response(RestReply(*candle))
        if found is None:
            return _response(text_reply(404, f"nothing at {split.path}; {_hint()}\n"))
        venue_exchange, path = found
        venue = venue_exchange.venue
        routed = find_route(venue_exchange.routes, path)
        if routed is None:
            routes = ", ".join(venue_exchange.rest_prefix + r.pattern for r in venue_exchange.routes)
            reply = text_reply(404, f"{venue} serves no {path}; try {routes}\n")
            self.stats.rest(venue, reply.status)
            return _response(reply)
        route, params = routed
        state = self._ctx.venues[venue]
        now = asyncio.get_running_loop().time() - self._ctx.started
        rest_request = RestRequest(path, parse_qs(split.query, keep_blank_values=True), params,
                                   now, state.universe, state.shared)
        budget = self._limiter.limits(venue).rest_weight_per_minute
        verdict = None
        if route.weight is not None and budget is not None:
            verdict = self._budget.charge(venue, ip, route.weight(rest_request), budget)
        if verdict is not None and verdict.status != 200:
            reply = _retry_after(venue_exchange.over_budget(verdict, budget), verdict.retry_after)
        else:
            fault = self.faults.rest_fault(venue, path, route.snapshots) \
                if self.faults is not None else None
            reply = await self._answer(route.handler, rest_request, venue_exchange, fault)
        if verdict is not None:
            reply = reply._replace(headers=reply.headers + venue_exchange.weight_headers(
                verdict.used))
        self.stats.rest(venue, reply.status, route.pattern, rest_request.one("symbol"))
        return _response(reply)

    @staticmethod
    async def _answer(handler: Callable[[RestRequest], RestReply], request: RestRequest,
                      venue_exchange: SimulatedExchange, fault: Optional[Fault]) -> RestReply:
        if fault is not None and fault.kind == HTTP_ERROR:
            reply = venue_exchange.rest_error(fault.status)
            return reply if fault.retry_after is None else _retry_after(reply, fault.retry_after)
        if fault is not None and fault.kind == STALE_SNAPSHOT:
            request = request._replace(lag=fault.frames)
        elif fault is not None:  # slow_reply
            await asyncio.sleep(fault.duration)
        return handler(request)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None and self._ctx is not None
        found = by_ws_path(urlsplit(ws.request.path).path.rstrip("/") or "/")
        assert found is not None  # checked by _process_request
        await found.session(ws, self._ctx, next(self._numbers)).run()

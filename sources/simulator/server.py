"""The simulator's server: one port, a websocket path and a REST prefix per venue.

A websocket handshake is routed by path to the venue's session, after the fault
plan's refusals and the venue's connection caps (HTTP 429 beyond them, as the
real venues answer). Any other GET is REST (:mod:`sources.simulator.rest`):
websockets' ``process_request`` answers it before any upgrade is attempted.
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
from typing import Dict, Iterable, List, Optional, Set, Tuple, Type
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from sources.simulator.clock import ExchangeClock, offset_ms
from sources.simulator.context import ServerContext, SimulatorConfig, VenueState
from sources.simulator.exchanges import EXCHANGES, VENUES, by_rest_path, by_ws_path, exchange
from sources.simulator.faults import HTTP_ERROR, Fault, FaultPlan
from sources.simulator.limits import ClientLimiter, Limits, override
from sources.simulator.outbox import FilterFactory, SendLog
from sources.simulator.recording import Recording
from sources.simulator.rest import RestReply, RestRequest, Route, find_route, text_reply
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


def _hint() -> str:
    ws = ", ".join(ROUTES)
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
    ``frame_filters``. :attr:`stats` counts what clients did.
    """

    def __init__(self, recording: Recording, *, host: str = "127.0.0.1", port: int = 0,
                 config: SimulatorConfig = SimulatorConfig(),
                 send_log: Optional[SendLog] = None,
                 frame_filters: Optional[FilterFactory] = None,
                 faults: Optional[FaultPlan] = None) -> None:
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
        self._port = port
        self._send_log = send_log
        self._frame_filters = faults.frame_filter if faults is not None else frame_filters
        self.faults = faults
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
            venues[e.venue] = VenueState(e, clock, universe, book_start)
        self._ctx = ServerContext(self.recording, config, started, venues, self.stats,
                                  self._limiter, send_log=self._send_log,
                                  frame_filters=self._frame_filters, faults=self.faults)
        try:
            self._server = await serve(
                self._handle, self.host, self._port, process_request=self._process_request,
                compression="deflate" if config.compression else None)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno in errno.errorcode else str(exc)
            raise OSError(f"cannot listen on {self.host}:{self._port}: {reason}") from None
        return self.port

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._watchers):
            task.cancel()

    async def _process_request(self, connection: ServerConnection,
                               request: Request) -> Optional[Response]:
        path = urlsplit(request.path).path
        if not _is_upgrade(request):
            return await self._rest(request)
        found = by_ws_path(path.rstrip("/") or "/")
        if found is None:
            return connection.respond(404, f"no venue at {request.path}; {_hint()}\n")
        if self.faults is not None:
            refused = self.faults.refusal(connection, found.venue)
            if refused is not None:
                return refused
        address = connection.remote_address
        ip = str(address[0]) if address else ""
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

    async def _rest(self, request: Request) -> Response:
        assert self._ctx is not None
        split = urlsplit(request.path)
        found = by_rest_path(split.path)
        if found is None:
            return _response(text_reply(404, f"nothing at {split.path}; {_hint()}\n"))
        venue_exchange, path = found
        venue = venue_exchange.venue
        routed = find_route(venue_exchange.routes, path)
        if routed is None:
            routes = ", ".join(venue_exchange.rest_prefix + r.pattern for r in venue_exchange.routes)
            reply = text_reply(404, f"{venue} serves no {path}; try {routes}\n")
        else:
            fault = self.faults.rest_fault(venue, path) if self.faults is not None else None
            reply = await self._answer(routed, path, split.query, venue, fault)
        self.stats.rest(venue, reply.status)
        return _response(reply)

    async def _answer(self, routed: Tuple[Route, Dict[str, str]], path: str, query: str, venue: str,
                      fault: Optional[Fault]) -> RestReply:
        assert self._ctx is not None
        if fault is not None and fault.kind == HTTP_ERROR:
            reply = self._ctx.venues[venue].exchange.rest_error(fault.status)
            if fault.retry_after is not None:
                reply = reply._replace(headers=reply.headers + (
                    ("Retry-After", str(math.ceil(fault.retry_after))),))
            return reply
        if fault is not None:  # slow_reply
            await asyncio.sleep(fault.duration)
        route, params = routed
        now = asyncio.get_running_loop().time() - self._ctx.started
        return route.handler(RestRequest(path, parse_qs(query, keep_blank_values=True), params,
                                         now, self._ctx.venues[venue].universe))

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None and self._ctx is not None
        session_class = ROUTES[urlsplit(ws.request.path).path.rstrip("/") or "/"]
        await session_class(ws, self._ctx, next(self._numbers)).run()

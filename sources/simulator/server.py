"""The simulator's websocket server: one port, one venue per path."""

from __future__ import annotations

import asyncio
import itertools
from typing import Dict, Iterable, Optional, Type
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from sources.simulator.candles import Prints, answer
from sources.simulator.coinbase import CoinbaseSession
from sources.simulator.coinbase_exchange import CoinbaseExchangeSession
from sources.simulator.context import ServerContext, SimulatorConfig
from sources.simulator.deribit import DeribitSession
from sources.simulator.faults import Fault, FaultPlan
from sources.simulator.market import Recording
from sources.simulator.outbox import FilterFactory, SendLog
from sources.simulator.session import Session

#: Request path → venue. ``/ws/api/v2`` is Deribit's own path, so a client
#: configured with a real Deribit URL only needs its host changed.
ROUTES: Dict[str, Type[Session]] = {
    "/coinbase": CoinbaseSession,
    "/coinbase-exchange": CoinbaseExchangeSession,
    "/deribit": DeribitSession,
    "/ws/api/v2": DeribitSession,
}


def _route(request: Request) -> Optional[Type[Session]]:
    return ROUTES.get(urlsplit(request.path).path.rstrip("/") or "/")


def check_fault_venues(faults: Iterable[Fault]) -> None:
    """Raise ValueError for a fault scoped to a venue no path serves: it would
    silently never fire."""
    venues = {session.venue for session in ROUTES.values()}
    unknown = sorted({f.venue for f in faults if f.venue is not None} - venues)
    if unknown:
        raise ValueError(f"faults name unknown venues {unknown}; "
                         f"valid venues: {', '.join(sorted(venues))}")


class SimulatorServer:
    """Serves a :class:`~sources.simulator.market.Recording` on ``host:port``
    (port 0 picks a free one) from inside a running event loop.

    ``send_log`` is called with a :class:`~sources.simulator.outbox.SendRecord` per
    book frame sent; ``frame_filters`` plugs a per-connection
    :data:`~sources.simulator.outbox.FrameFilter` into every send path;
    ``faults`` injects a :class:`~sources.simulator.faults.FaultPlan` (its own
    frame filter, refused handshakes and subscribes), so it excludes
    ``frame_filters``. ``candles`` (:func:`~sources.simulator.candles.load_prints`)
    makes plain HTTP GETs of the venues' candle endpoints answer on the same port.
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
        self.recording = recording
        self.host = host
        self.config = config
        self._port = port
        self._send_log = send_log
        self._frame_filters = faults.frame_filter if faults is not None else frame_filters
        self.faults = faults
        self.candles = candles
        self._server: Optional[Server] = None
        self._ctx: Optional[ServerContext] = None
        self._numbers = itertools.count()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ws://host:port``; append ``/coinbase`` or ``/deribit``."""
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> int:
        """Listen; return the port."""
        self._ctx = ServerContext(self.recording, self.config,
                                  started=asyncio.get_running_loop().time(),
                                  send_log=self._send_log, frame_filters=self._frame_filters,
                                  faults=self.faults)
        self._server = await serve(
            self._handle, self.host, self._port, process_request=self._check_path,
            compression="deflate" if self.config.compression else None)
        return self.port

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _check_path(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        if self.candles is not None and "upgrade" not in request.headers.get("Connection",
                                                                             "").lower():
            url = urlsplit(request.path)
            reply = answer(self.candles, url.path, parse_qs(url.query))
            if reply is not None:
                response = connection.respond(reply[0], reply[1].decode())
                del response.headers["Content-Type"]
                response.headers["Content-Type"] = "application/json"
                return response
        session_class = _route(request)
        if session_class is None:
            return connection.respond(404, f"no venue at {request.path}; "
                                           f"try one of {', '.join(ROUTES)}\n")
        if self.faults is not None:
            return self.faults.refusal(connection, session_class.venue)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None and self._ctx is not None
        session_class = _route(ws.request)
        assert session_class is not None  # _check_path refused other paths
        await session_class(ws, self._ctx, next(self._numbers)).run()

"""Binance spot, USD-M and COIN-M futures, simulated: one module, three venues.

Websockets (``ws://HOST:PORT`` + path; the venue's own hosts have the same paths
without the prefix)::

    binance        /binance/stream?streams=...   /binance/ws[/<stream>]
    binance_usdm   /binance_usdm/public/stream   /binance_usdm/market/stream
                   (also /public/..., /market/... unprefixed; /binance_usdm/stream
                   is the legacy unrouted path, which carries /public data only)
    binance_coinm  /binance_coinm/stream         /binance_coinm/ws[/<stream>]

``/stream`` connections are combined streams (every event wrapped as
``{"stream": name, "data": event}``, ``?streams=a/b`` subscribes at once), ``/ws``
ones raw (bare events; ``SET_PROPERTY ["combined", true]`` switches). Requests
are ``{"method", "params", "id"}``: ``SUBSCRIBE``/``UNSUBSCRIBE`` answer
``{"result": null, "id": n}``, ``LIST_SUBSCRIPTIONS`` the names, ``SET_PROPERTY``/
``GET_PROPERTY`` the ``combined`` flag; errors are ``{"code", "msg", "id"}`` with
the documented codes (0 unknown property, 1 bad value type, 2 invalid request, 3
invalid JSON). A request with one bad stream name subscribes nothing.

Streams served, from the recording under whichever name was subscribed:
``<symbol>@depth`` and ``@depth@100ms`` (futures also ``@depth@0ms``, which the
bundled recordings use though the docs do not list it, and ``@500ms``): the
recorded diffs, whatever speed was asked, one depth stream per symbol and
connection; ``@trade``, ``@aggTrade``, ``@bookTicker``, futures ``@markPrice``
and ``@markPrice@1s``. A stream with nothing recorded (the bundled hftbacktest
captures hold ``trade`` but no ``aggTrade``, and none holds ``markPrice``) is
accepted and delivers nothing, as a real quiet stream. USD-M's 2026 URL split
is enforced silently, as on the real venue: ``/market`` delivers only
``aggTrade``/``markPrice``, ``/public`` (and the legacy path) only the rest; a
stream on the wrong path is accepted and never delivered. Unknown symbols are
accepted and deliver nothing, as the real server does (its REST ``depth``
answers ``-1121 Invalid symbol.``); stream types the simulator does not serve
(klines, partial depth, tickers) are refused with code 2.

Connections: ping frames every 20 s, closed 60 s after an unanswered one (spot;
futures 180 s / 600 s); unsolicited pongs keep nothing alive. At most 1,024
streams. Every frame a client sends (requests, pings, pongs) counts against 5
per second (spot; futures 10); the frame over it closes the connection (1008,
counted in ``message_limit_closes``). After 24 h the connection is closed (1001)
with a ``serverShutdown`` event ten minutes before, wrapped in the first
subscribed stream's name on a combined connection (⚠ the real wrapping on market
streams is undocumented; this is the form lobstream parses).
:class:`~sources.simulator.context.SimulatorConfig` shortens all of these.

REST, same port: ``/api/v3/depth`` (spot), ``/fapi/v1/depth``, ``/dapi/v1/depth``
(``symbol``, ``limit``: spot 1-5000, default 100, more is cut to 5000; futures
5/10/20/50/100/500/1000, default 500) and ``.../exchangeInfo`` (the bundled
replies, ``symbol``/``symbols`` filters on spot), under the venue's prefix or
unprefixed. A depth snapshot is **consistent with the replayed diff stream**:
its ``lastUpdateId`` is the ``u`` of the last diff taken by the stream of that
symbol on the connection furthest along (or, before the recording's own REST
snapshot is reached or with no connection, that snapshot, ahead of the stream as
a real one is), the book as of that diff, truncated to ``limit``; futures add
``E``/``T`` of that point, COIN-M ``symbol``/``pair``. The book is rebuilt from
the recording's REST snapshot and every diff after it. Request weight (spot
5/25/50/250 by limit, futures 2/5/10/20; ``exchangeInfo`` 20 spot, 1 futures) is
charged per IP against 6,000 (spot) or 2,400 (futures) a minute and reported
in ``X-MBX-USED-WEIGHT-1M``; beyond it 429 with ``Retry-After``, then 418
(:class:`~sources.simulator.limits.WeightBudget`).

Exchange times: ``E`` and ``T`` of every event and snapshot, moved by the
exchange clock.

The books the snapshots are cut from live in
:mod:`~sources.simulator.exchanges.binance_books_server`.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import (Any, Callable, Dict, FrozenSet, Hashable, List, Mapping, NamedTuple,
                    Optional, Sequence, Tuple, Union)
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.frames import Opcode

from sources.simulator.clock import ExchangeClock
from sources.simulator.exchanges.base import Indexed, SimulatedExchange
from sources.simulator.exchanges.binance_books_server import (DEPTH, SNAPSHOT, BinanceShared,
                                                              DepthStream, Wrap, update_ids)
from sources.simulator.limits import Limits, SlidingWindow, WeightVerdict
from sources.simulator.outbox import DATA, REPLY, OutFrame
from sources.simulator.recording import RecordedFrame, Recording
from sources.simulator.rest import RestReply, RestRequest, Route, json_reply
from sources.simulator.session import Session
from sources.simulator.stream import Adapt, ProductStream
from sources.simulator.universe import Record, ReferenceList, read_reference

TRADE, AGG_TRADE, BOOK_TICKER, MARK_PRICE = "trade", "aggTrade", "bookTicker", "markPrice"
#: Event type (``e``) -> the recording channel it is kept in.
EVENT_CHANNELS = {"depthUpdate": DEPTH, "trade": TRADE, "aggTrade": AGG_TRADE,
                  "bookTicker": BOOK_TICKER, "markPriceUpdate": MARK_PRICE}
#: USD-M's URL split: the channels each path delivers.
PUBLIC_TIER = frozenset((DEPTH, BOOK_TICKER, TRADE))
MARKET_TIER = frozenset((AGG_TRADE, MARK_PRICE))
#: Stream types the venues have but the simulator does not serve.
UNSERVED = re.compile(r"(depth\d+|kline_\w+|ticker|miniTicker|avgPrice|forceOrder|"
                      r"compositeIndex|contractInfo|indexPrice|markPriceKline_\w+|"
                      r"indexPriceKline_\w+|continuousKline_\w+|ticker_\w+)(@\w+)?")
_STREAM = re.compile(r"([a-z0-9_]{2,40})@([A-Za-z0-9_]+)((?:@[0-9a-z]+)?)")

MAX_STREAMS = 1024
LIFETIME = 24 * 3600.0
#: ``deliveryDate`` of perpetual futures (2100-12-25): not a time to move.
PERPETUAL_DELIVERY = 4133404800000
#: Quote assets a spot or USD-M symbol may end in, longest first (what makes two
#: symbols alike when a book is cloned).
QUOTES = ("USDT", "BUSD", "USDC", "TUSD", "FDUSD", "BIDR", "IDRT", "BVND", "BTC", "ETH",
          "BNB", "EUR", "GBP", "AUD", "BRL", "TRY", "RUB", "UAH", "NGN", "DAI", "PAX",
          "ZAR", "XRP", "TRX", "DOT")
_COINM_SYMBOL = re.compile(r"[A-Z0-9]+USD_(PERP|\d{6})")


@dataclass(frozen=True)
class Market:
    """One of the three venues' fixed facts (binance-spot-api-docs; the USD-M and
    COIN-M derivatives docs)."""

    venue: str
    prefix: str
    futures: bool
    #: REST root below the prefix, and the venue's own path prefix.
    api: str
    #: What may follow ``@depth`` in a stream name.
    depth_speeds: FrozenSet[str]
    #: ``(largest limit, weight)``, ascending.
    depth_weights: Tuple[Tuple[int, int], ...]
    #: The limits a depth request may name (None: any from 1 to ``max_limit``).
    limit_choices: Optional[Tuple[int, ...]]
    max_limit: int
    default_limit: int
    info_weight: int
    info_file: str
    ping_interval: float
    pong_timeout: float
    #: USD-M's ``/public`` and ``/market`` paths.
    tiers: bool
    limits: Limits

    def weight(self, limit: int) -> int:
        return next((w for top, w in self.depth_weights if limit <= top),
                    self.depth_weights[-1][1])


SPOT = Market("binance", "/binance", False, "/api/v3", frozenset(("", "@100ms")),
              ((100, 5), (500, 25), (1000, 50), (5000, 250)), None, 5000, 100, 20,
              "binance_exchange_info.json.gz", 20.0, 60.0, False,
              Limits(connection_messages_per_second=5, rest_weight_per_minute=6000))
_FUTURES_DEPTH = dict(depth_speeds=frozenset(("", "@0ms", "@100ms", "@500ms")),
                      depth_weights=((50, 2), (100, 5), (500, 10), (1000, 20)),
                      limit_choices=(5, 10, 20, 50, 100, 500, 1000), max_limit=1000,
                      default_limit=500, info_weight=1, ping_interval=180.0, pong_timeout=600.0,
                      limits=Limits(connection_messages_per_second=10,
                                    rest_weight_per_minute=2400))
USDM = Market("binance_usdm", "/binance_usdm", True, "/fapi/v1",
              info_file="binance_usdm_exchange_info.json.gz", tiers=True, **_FUTURES_DEPTH)
COINM = Market("binance_coinm", "/binance_coinm", True, "/dapi/v1",
               info_file="binance_coinm_exchange_info.json.gz", tiers=False, **_FUTURES_DEPTH)
MARKETS = (SPOT, USDM, COINM)


def _bases(market: Market) -> Tuple[str, ...]:
    """The path roots a market's websockets hang from."""
    if not market.tiers:
        return (market.prefix,)
    return (market.prefix, *(root + tier for root in (market.prefix, "")
                             for tier in ("/public", "/market")))


# --- stream names ---------------------------------------------------------------

class StreamError(Exception):
    """A request the venue answers with an error: ``code`` and ``msg``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


INVALID_STREAM = "Invalid request: invalid stream"


class StreamName(NamedTuple):
    """One subscribed stream: its ``name`` as the client wrote it, the upper-case
    ``symbol`` and the recording ``channel`` serving it."""

    name: str
    symbol: str
    channel: str


def parse_stream(market: Market, name: Any) -> StreamName:
    """Check one stream name; raises :class:`StreamError` (code 2)."""
    match = _STREAM.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise StreamError(2, INVALID_STREAM)
    symbol, kind, speed = match.groups()
    allowed = {DEPTH: market.depth_speeds, TRADE: frozenset(("",)), AGG_TRADE: frozenset(("",)),
               BOOK_TICKER: frozenset(("",))}
    if market.futures:
        allowed[MARK_PRICE] = frozenset(("", "@1s"))
    if kind in allowed and speed in allowed[kind]:
        return StreamName(name, symbol.upper(), kind)
    if UNSERVED.fullmatch(kind + speed):
        raise StreamError(2, f"Invalid request: the simulator does not serve {kind} streams; "
                             f"it serves {', '.join(sorted(allowed))}")
    raise StreamError(2, INVALID_STREAM)


class WsRoute(NamedTuple):
    """What a websocket path says: combined or raw, USD-M's tier (None: the
    venue has none, or the legacy path), and the streams it subscribes."""

    combined: bool
    tier: Optional[str]
    streams: List[StreamName]


def ws_route(market: Market, path: str, query: str) -> WsRoute:
    """Parse a handshake's path; raises :class:`StreamError` for bad streams."""
    path = path.rstrip("/")
    for base in sorted(_bases(market), key=len, reverse=True):
        rest = path[len(base):] if path.startswith(base + "/") else None
        if rest is None:
            continue
        tier = base.rpartition("/")[2] if market.tiers and base != market.prefix else None
        if rest == "/stream":
            names = [n for value in parse_qs(query).get("streams", [])
                     for n in value.split("/") if n]
            combined = True
        elif rest == "/ws" or rest.startswith("/ws/"):
            names = [rest[len("/ws/"):]] if rest != "/ws" else []
            combined = False
        else:
            continue
        if len(names) > MAX_STREAMS:
            raise StreamError(2, f"Invalid request: at most {MAX_STREAMS} streams")
        return WsRoute(combined, tier, [parse_stream(market, n) for n in names])
    raise StreamError(2, f"Invalid request: no stream path {path!r}")


# --- recorded data -----------------------------------------------------------------

def _event(msg: Dict[str, Any]) -> Any:
    """The event of a combined-stream frame, or the frame itself (raw streams)."""
    return msg.get("data") if "stream" in msg else msg


def _channel(event: Dict[str, Any]) -> Optional[str]:
    kind = event.get("e")
    if kind is None and {"u", "s", "b", "a"} <= event.keys():
        return BOOK_TICKER  # spot book tickers carry no event type
    return EVENT_CHANNELS.get(kind) if isinstance(kind, str) else None


def _market_of(channel: str, event: Dict[str, Any], symbol: str) -> Optional[str]:
    """Which of the three venues an event's shape says it is from (None: it does
    not say; the capture's venue decides)."""
    if "ps" in event or _COINM_SYMBOL.fullmatch(symbol):
        return COINM.venue
    futures = {DEPTH: "pu" in event, TRADE: "X" in event, AGG_TRADE: "M" not in event,
               BOOK_TICKER: "e" in event, MARK_PRICE: True}[channel]
    if channel == TRADE and not futures and "M" not in event:
        return None
    return USDM.venue if futures else SPOT.venue


class EventStream(ProductStream):
    """A trade, aggTrade, bookTicker or markPrice stream: recorded events as they are."""

    def __init__(self, product: str, frames: Sequence[RecordedFrame], name: str, wrap: Wrap,
                 adapt: Adapt) -> None:
        super().__init__(product, frames, adapt)
        self.name = name
        self._wrap = wrap

    def render(self, event: Dict[str, Any]) -> OutFrame:
        return OutFrame(DATA, self._wrap(self.name, event), product=self.product)


# --- the session -------------------------------------------------------------------

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
#: Frames counted against the message limit (close frames end the connection anyway).
COUNTED = frozenset((Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG))


def _request_id(value: Any) -> bool:
    """Ids the venue accepts: unsigned 64-bit integers, strings up to 36
    characters, or null."""
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= 36
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


class BinanceSession(Session):
    """One connection to one of the three venues (subclasses name the market)."""

    market: Market = SPOT

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        state = self.ctx.venues[self.venue]
        self.shared: BinanceShared = state.shared
        self._exchange = state.exchange
        assert self.ws.request is not None
        split = urlsplit(self.ws.request.path)
        route = ws_route(self.market, split.path, split.query)  # checked at the handshake
        self.combined = route.combined
        self._tier = route.tier
        self._subs: Dict[str, StreamName] = {}
        self._streams: Dict[Tuple[str, str], Union[DepthStream, EventStream]] = {}
        self._window = SlidingWindow()
        self._cap = self.ctx.limiter.limits(self.venue).connection_messages_per_second
        self._closing = False
        self._methods: Dict[str, Callable[[Any], Any]] = {
            "SUBSCRIBE": self._subscribe, "UNSUBSCRIBE": self._unsubscribe,
            "LIST_SUBSCRIPTIONS": lambda params: list(self._subs),
            "SET_PROPERTY": self._set_property, "GET_PROPERTY": self._get_property}
        self.ws.frame_hook = self._counted  # type: ignore[attr-defined]
        self._keepalive()
        if route.streams:
            self.count_subscribe(len(route.streams))
            self._add(route.streams)

    def _keepalive(self) -> None:
        """The venue's ping schedule instead of the server's default one."""
        config, ws = self.ctx.config, self.ws
        ws.ping_interval = config.ping_interval or self.market.ping_interval
        ws.ping_timeout = config.pong_timeout or self.market.pong_timeout
        if ws.keepalive_task is not None:
            ws.keepalive_task.cancel()
        ws.start_keepalive()

    async def run(self) -> None:
        self.spawn(self._lifetime())
        await super().run()

    def closed(self) -> None:
        for stream in self._streams.values():
            if isinstance(stream, DepthStream):
                self.shared.unregister(stream)

    def _counted(self, opcode: Opcode) -> None:
        """Every frame the client sends; the one over the cap closes the connection."""
        if opcode not in COUNTED:
            return
        allowed, n = self._window.add(asyncio.get_running_loop().time(), self._cap)
        self.ctx.stats.message_rate(self.venue, n, not allowed)
        if not allowed and not self._closing:
            self._closing = True
            self.ctx.stats.message_limit_close(self.venue)
            self.spawn(self.ws.close(1008, "Too many messages"))

    async def _lifetime(self) -> None:
        config = self.ctx.config
        lifetime = config.lifetime if config.lifetime is not None else LIFETIME
        notice = min(config.shutdown_notice, lifetime)
        await asyncio.sleep(lifetime - notice)
        event = {"e": "serverShutdown", "E": self.clock.ms(round(self.recorded_now()))}
        first = next(iter(self._subs), None)
        await self.send(DATA, self.wrap(first, event) if first is not None else event)
        await asyncio.sleep(notice)
        await self.ws.close(1001, "connection lifetime reached")

    def wrap(self, name: str, event: Dict[str, Any]) -> Dict[str, Any]:
        return {"stream": name, "data": event} if self.combined else event

    async def handle(self, message: Union[str, bytes]) -> None:
        if self._closing:
            return
        request_id: Any = None
        try:
            try:
                request = orjson.loads(message)
            except orjson.JSONDecodeError as exc:
                raise StreamError(3, f"Invalid JSON: {exc}") from None
            if not isinstance(request, dict):
                raise StreamError(2, "Invalid request: expected a JSON object")
            if not _request_id(request.get("id")) or "id" not in request:
                raise StreamError(2, "Invalid request: request ID must be an unsigned integer")
            request_id = request["id"]
            method = request.get("method")
            if "method" not in request:
                raise StreamError(2, "Invalid request: missing field `method`")
            if not isinstance(method, str) or method not in self._methods:
                raise StreamError(2, f"Invalid request: unknown variant {method!r}, expected "
                                     f"one of {', '.join(METHODS)}")
            reply: Dict[str, Any] = {"result": self._methods[method](request.get("params")),
                                     "id": request_id}
        except StreamError as exc:
            reply = {"code": exc.code, "msg": exc.msg}
            if request_id is not None:
                reply["id"] = request_id
        # Subscribing changed state synchronously; the reply is queued before any
        # frame it causes, so it comes first.
        await self.send(REPLY, reply)
        self.replay.wake()

    @staticmethod
    def _names(params: Any) -> List[Any]:
        if not isinstance(params, list):
            raise StreamError(2, "Invalid request: params must be a list of stream names")
        return params

    def _subscribe(self, params: Any) -> None:
        names = self._names(params)
        self.count_subscribe(len(names))
        wanted = [parse_stream(self.market, name) for name in names]
        new = [s for s in dict.fromkeys(wanted) if s.name not in self._subs]
        if len(self._subs) + len(new) > MAX_STREAMS:
            raise StreamError(2, f"Invalid request: at most {MAX_STREAMS} streams "
                                 "per connection")
        taken = {(s.channel, s.symbol): s.name for s in self._subs.values()}
        for stream in new:
            key = (stream.channel, stream.symbol)
            if taken.setdefault(key, stream.name) != stream.name:
                raise StreamError(2, f"Invalid request: {stream.symbol} already has the "
                                     f"{stream.channel} stream {taken[key]!r}; the simulator "
                                     "serves one per symbol and type")
        self._add(new)

    def _add(self, streams: Sequence[StreamName]) -> None:
        for stream in streams:
            self._subs[stream.name] = stream
            if self.market.tiers and stream.channel not in (
                    MARKET_TIER if self._tier == "market" else PUBLIC_TIER):
                continue  # the wrong path for this stream: silently nothing
            self._start(stream)

    def _start(self, stream: StreamName) -> None:
        key = (stream.channel, stream.symbol)
        existing = self._streams.get(key)
        if existing is not None:
            existing.name = stream.name
            if not existing.active:
                existing.resume()
            return
        source = self.universe.source(stream.symbol, self.now())
        if source is None:
            return  # unknown (or unlisted) symbols are accepted and stay silent
        adapt = self._adapt(stream.channel, stream.symbol, source)
        if stream.channel == DEPTH:
            made: Union[DepthStream, EventStream] = DepthStream(
                stream.symbol, self.shared.timeline(source), stream.name, self.wrap, adapt,
                self.shared.history)
            self.shared.register(made)
        else:
            made = EventStream(stream.symbol,
                               self.ctx.recording.frames(self.venue, stream.channel, source),
                               stream.name, self.wrap, adapt)
        self._streams[key] = made
        self.replay.add(made)

    def _adapt(self, channel: str, symbol: str, source: str) -> Adapt:
        clock, exchange = self.clock, self._exchange

        def adapt(event: Dict[str, Any]) -> Dict[str, Any]:
            if symbol != source:
                event = exchange.rename(channel, event, symbol)
            if clock.shifted:
                event = {**event, **{k: clock.ms(event[k]) for k in ("E", "T") if k in event}}
            return event
        return adapt

    def _unsubscribe(self, params: Any) -> None:
        for name in self._names(params):
            stream = self._subs.pop(name, None) if isinstance(name, str) else None
            if stream is None:
                continue
            running = self._streams.get((stream.channel, stream.symbol))
            if running is not None and running.name == name and running.active:
                running.pause()

    def _set_property(self, params: Any) -> None:
        if not isinstance(params, list) or len(params) != 2:
            raise StreamError(2, "Invalid request: SET_PROPERTY takes [name, value]")
        name, value = params
        self._check_property(name)
        if not isinstance(value, bool):
            raise StreamError(1, "Invalid value type: expected Boolean")
        self.combined = value

    def _get_property(self, params: Any) -> bool:
        if not isinstance(params, list) or len(params) != 1:
            raise StreamError(2, "Invalid request: GET_PROPERTY takes [name]")
        self._check_property(params[0])
        return self.combined

    @staticmethod
    def _check_property(name: Any) -> None:
        if not isinstance(name, str):
            raise StreamError(2, "Invalid request: property name must be a string")
        if name != "combined":
            raise StreamError(0, "Unknown property")


class SpotSession(BinanceSession):
    venue = SPOT.venue
    market = SPOT


class UsdmSession(BinanceSession):
    venue = USDM.venue
    market = USDM


class CoinmSession(BinanceSession):
    venue = COINM.venue
    market = COINM


# --- REST ----------------------------------------------------------------------------

def _error(status: int, code: int, msg: str) -> RestReply:
    return json_reply({"code": code, "msg": msg}, status)


def _limit(market: Market, text: Optional[str]) -> Union[int, RestReply]:
    if text is None or text == "":
        return market.default_limit
    if not text.isdigit() or len(text) > 20:
        return _error(400, -1100, "Illegal characters found in parameter 'limit'; "
                                  "legal range is '^[0-9]{1,20}$'.")
    value = int(text)
    if market.limit_choices is None:
        return min(value, market.max_limit) if value >= 1 else \
            _error(400, -1130, "Data sent for parameter 'limit' is not valid.")
    if value not in market.limit_choices:
        return _error(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return value


def _top(levels: Mapping[str, str], limit: int, best_high: bool) -> List[List[str]]:
    prices = sorted(levels, key=float, reverse=best_high)[:limit]
    return [[p, levels[p]] for p in prices]


def depth_weight(market: Market) -> Callable[[RestRequest], int]:
    def weight(request: RestRequest) -> int:
        limit = _limit(market, request.one("limit"))
        return market.weight(limit if isinstance(limit, int) else market.default_limit)
    return weight


def depth_handler(market: Market) -> Callable[[RestRequest], RestReply]:
    """``GET .../depth``: see the module docstring."""

    def depth(request: RestRequest) -> RestReply:
        symbol = request.one("symbol")
        if not symbol:
            return _error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, "
                                      "or malformed.")
        limit = _limit(market, request.one("limit"))
        if isinstance(limit, RestReply):
            return limit
        source = request.universe.source(symbol, request.now)
        if source is None:
            listed = request.universe.get(symbol) is not None
            return _error(400, -1121, "Invalid symbol." + (
                " (listed, but no recorded book serves it; see clone_books)" if listed else ""))
        shared: BinanceShared = request.shared
        book = shared.depth(symbol, source, request.lag)
        if book is None:
            return _error(503, -1000, f"the recording holds no REST depth snapshot of {source}, "
                                      "so no book consistent with its diffs is known")
        body: Dict[str, Any] = {"lastUpdateId": book.last_id}
        if market is COINM:
            body.update(symbol=symbol, pair=symbol.partition("_")[0])
        if market.futures:
            body.update({k: shared.clock.ms(book.event[k]) for k in ("E", "T")
                         if isinstance(book.event.get(k), int)})
        body.update(bids=_top(book.bids, limit, True), asks=_top(book.asks, limit, False))
        return json_reply(body)
    return depth


def info_handler(market: Market) -> Callable[[RestRequest], RestReply]:
    """``GET .../exchangeInfo``: the bundled reply, the listed symbols, now."""

    def info(request: RestRequest) -> RestReply:
        records = request.universe.records(request.now)
        wanted: Any = []
        if not market.futures:
            one, many = request.one("symbol"), request.one("symbols")
            if one is not None and many is not None:
                return _error(400, -1128, "Combination of optional parameters invalid.")
            if many is not None:
                try:
                    wanted = orjson.loads(many)
                except orjson.JSONDecodeError:
                    wanted = None
                if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
                    return _error(400, -1100, "Illegal characters found in parameter 'symbols'.")
            elif one is not None:
                wanted = [one]
        if wanted:
            by_name = {r.get("symbol"): r for r in records}
            if any(w not in by_name for w in wanted):
                return _error(400, -1121, "Invalid symbol.")
            records = [by_name[w] for w in dict.fromkeys(wanted)]
        shared: BinanceShared = request.shared
        return json_reply({**shared.info, "serverTime": int(time.time() * 1000),
                           "symbols": records})
    return info


class Binance(SimulatedExchange):
    """One of the three venues, declared from its :class:`Market`."""

    book_channel = DEPTH

    def __init__(self, market: Market, session: type) -> None:
        self.market = market
        self.venue = market.venue
        self.session = session
        bases = _bases(market)
        self.ws_paths = tuple(base + leaf for base in bases for leaf in ("/stream", "/ws"))
        self.ws_prefixes = tuple(base + "/ws" for base in bases)
        self.rest_prefix = market.prefix
        self.rest_aliases = (market.api + "/",)
        self.routes = (
            Route(market.api + "/depth", depth_handler(market), depth_weight(market),
                  snapshots=True),
            Route(market.api + "/exchangeInfo", info_handler(market),
                  lambda request: market.info_weight))
        self.limits = market.limits

    def index(self, msg: Dict[str, Any]) -> Optional[List[Indexed]]:
        if "jsonrpc" in msg or "channel" in msg or "type" in msg:
            return None  # Deribit, Coinbase
        if "stream" not in msg and "result" in msg and "id" in msg:
            return []  # a reply to a request
        event = _event(msg)
        if not isinstance(event, dict):
            return None
        channel = _channel(event)
        symbol = event.get("s")
        if channel is None or not isinstance(symbol, str):
            # Binance's, but not served (klines...), or nobody's.
            return [] if "stream" in msg or isinstance(event.get("e"), str) else None
        owner = _market_of(channel, event, symbol)
        if owner is not None and owner != self.venue:
            return None
        return [(channel, symbol, event)]

    def index_rest(self, url: str, body: Any) -> Optional[List[Indexed]]:
        split = urlsplit(url)
        segments = split.path.split("/")
        if len(segments) < 3 or segments[-1] != "depth" or not isinstance(body, dict) \
                or not isinstance(body.get("lastUpdateId"), int):
            return None
        if segments[1] != self.market.api.split("/")[1]:
            return None  # another of the three ("api", "fapi", "dapi")
        symbols = parse_qs(split.query).get("symbol") or []
        return [(SNAPSHOT, symbols[0], body)] if len(symbols) == 1 else []

    def rename(self, channel: str, payload: Dict[str, Any], name: str) -> Dict[str, Any]:
        pair = name.partition("_")[0]
        renamed = {**payload}
        for key, value in (("s", name), ("ps", pair), ("symbol", name), ("pair", pair)):
            if key in payload:
                renamed[key] = value
        return renamed

    def handshake_error(self, path: str, query: str) -> Optional[str]:
        try:
            ws_route(self.market, path, query)
        except StreamError as exc:
            return exc.msg
        return None

    def shared_state(self, recording: Recording, clock: ExchangeClock, limits: Limits,
                     history: int, reference_dir: Optional[Path]) -> BinanceShared:
        path = reference_dir / self.market.info_file if reference_dir is not None else None
        body = read_reference(path) if path is not None and path.exists() else {}
        info = {k: v for k, v in body.items() if k not in ("symbols", "serverTime")} \
            if isinstance(body, dict) else {}
        budget = limits.rest_weight_per_minute
        if budget is not None and isinstance(info.get("rateLimits"), list):
            info["rateLimits"] = [{**r, "limit": budget}
                                  if isinstance(r, dict) and r.get("rateLimitType") ==
                                  "REQUEST_WEIGHT" else r for r in info["rateLimits"]]
        return BinanceShared(self.venue, self.market.futures, recording, clock, history, info)

    def size_slots(self, msg: Dict[str, Any]) -> List[Tuple[Any, Any]]:
        event = _event(msg)
        if not isinstance(event, dict):
            return []
        return [(level, 1) for key in ("b", "a") for level in event.get(key) or ()
                if isinstance(level, list) and len(level) >= 2]

    def break_chain(self, msg: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        event = _event(msg)
        ids = update_ids(event) if isinstance(event, dict) else None
        if ids is None:
            return None
        first, last, prev = ids
        if prev is not None:
            event["pu"] = prev - 1 if prev > 0 else prev + 1
        elif first < last:
            event["U"] = first + 1
        else:
            return None
        return msg

    def unknown_message(self, name: str, product: Optional[str]) -> Dict[str, Any]:
        symbol = product or "BTCUSDT"
        return {"stream": f"{symbol.lower()}@{name}", "data": {"e": name, "E": 0, "s": symbol}}

    def rest_error(self, status: int) -> RestReply:
        if status == 429:
            return _error(429, -1003, "Too many requests; please use the websocket for live "
                                      "updates to avoid polling the API.")
        if status >= 500:
            return _error(status, -1001, "Internal error; unable to process your request. "
                                         "Please try again.")
        return _error(status, -1000, HTTPStatus(status).phrase)

    def weight_headers(self, used: int) -> Tuple[Tuple[str, str], ...]:
        return (("X-MBX-USED-WEIGHT", str(used)), ("X-MBX-USED-WEIGHT-1M", str(used)))

    def over_budget(self, verdict: WeightVerdict, budget: int) -> RestReply:
        if verdict.status == 418:
            until = int(time.time() * 1000 + verdict.retry_after * 1000)
            return _error(418, -1003, f"Way too much request weight used; IP banned until "
                                      f"{until}. Please use WebSocket Streams for live updates "
                                      "to avoid bans.")
        return _error(429, -1003, f"Too much request weight used; current limit is {budget} "
                                  "request weight per 1 MINUTE. Please use WebSocket Streams "
                                  "for live updates to avoid polling the API.")

    def reference_lists(self, directory: Path) -> List[ReferenceList]:
        path = directory / self.market.info_file
        if not path.exists():
            return []
        body = read_reference(path)
        symbols = body.get("symbols") if isinstance(body, dict) else None
        recorded = body.get("serverTime") if isinstance(body, dict) else None
        if not isinstance(symbols, list) or not isinstance(recorded, int):
            return []
        return [ReferenceList("", float(recorded), [s for s in symbols if isinstance(s, dict)])]

    def record_name(self, record: Record) -> str:
        return str(record.get("symbol"))

    def shift_record(self, record: Record, clock: ExchangeClock) -> Record:
        if not self.market.futures:
            return record
        shifted = {**record, "onboardDate": clock.ms(record.get("onboardDate"))}
        if record.get("deliveryDate") != PERPETUAL_DELIVERY:
            shifted["deliveryDate"] = clock.ms(record.get("deliveryDate"))
        return shifted

    def family(self, name: str) -> Tuple[Hashable, ...]:
        if self.market is COINM:
            return ("perpetual" if name.endswith("_PERP") else "delivery",)
        return (next((q for q in QUOTES if name.endswith(q)), ""),)


EXCHANGES = (Binance(SPOT, SpotSession), Binance(USDM, UsdmSession),
             Binance(COINM, CoinmSession))

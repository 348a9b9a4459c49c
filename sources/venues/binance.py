"""Binance spot, USD-M and COIN-M futures: the venues' home (three registry entries).

Wire format (binance-spot-api-docs ``web-socket-streams.md``; the derivatives docs
for USD-M and COIN-M): combined streams wrap every event as
``{"stream": "<symbol>@depth@100ms", "data": {...}}``; subscriptions are
``{"method": "SUBSCRIBE", "params": [...], "id": n}`` answered by
``{"result": null, "id": n}`` or an error ``{"code": n, "msg": "...", "id": n}``.
Prices and quantities are decimal strings; quantities are absolute level totals
and ``"0"`` removes the level. Symbols are upper case in events and lower case in
stream names.

Books are synchronised with REST snapshots, per symbol (exchange-protocols.md §D):
the feed buffers a symbol's diffs while its ``/depth`` snapshot is fetched, then
applies the snapshot and the buffered diffs that chain onto it. The chain rules
differ (:mod:`state.sync`): **spot** events carry ``U``/``u`` (``prev_seq`` =
``U - 1``), deltas with ``u <= lastUpdateId`` are stale and the first applied
straddles ``lastUpdateId + 1``; **futures** events carry ``pu`` (the previous
event's ``u``), deltas with ``u < lastUpdateId`` are stale and the first applied
satisfies ``U <= lastUpdateId <= u``. A break re-fetches that symbol's snapshot
alone, with its diffs buffered, not dropped. The summary's ``seq`` is ``u``.

Sizes: spot and USD-M in base units; COIN-M in contracts (each ``contractSize`` USD,
from the instrument list).

USD-M futures split their websocket host by data tier since 2026: ``/public``
carries ``@depth``, ``@bookTicker`` and ``@trade``; ``/market`` carries
``@aggTrade`` and ``@markPrice``. A stream on the wrong path is silently never
delivered, so the depth connection uses ``/public``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from itertools import count
from typing import (Annotated, Any, Callable, Dict, List, Literal, Mapping, Optional,
                    Sequence, Tuple, Union)
from urllib.parse import parse_qs, urlsplit

import msgspec

from sources.instruments.model import BASE, CONTRACTS, amounts
from sources.venues.base import (BOOK, ERROR, IGNORED, RECONNECT, REPLY, TICKER, TRADES,
                                 FrameError, Funding, Limits, Message, Millis, Parsed, Price,
                                 ProductId, Protocol, Raw, Reply, SeqNo, Setting, Size, TradeSize,
                                 Venue, Wire, check_name, loads, reason, safe_text, valid_product,
                                 valid_seq)
from sources.candles.model import Candle, CandleApi, check_candle
from state.events import SNAPSHOT, UPDATE, BookEvent, Ticker, Trade
from state.sync import chain_binance_futures, chain_binance_spot

#: Streams per SUBSCRIBE message; a connection may carry 1,024 streams.
STREAMS_PER_REQUEST = 200

_ABSENT = msgspec.Raw()


class _Envelope(Wire):
    stream: Optional[str] = None
    data: msgspec.Raw = _ABSENT
    id: Optional[SeqNo] = None
    result: msgspec.Raw = _ABSENT
    code: Optional[int] = None
    msg: str = ""


class _Event(Wire):
    e: str = ""


class _SpotDiff(Wire):
    E: Millis
    s: ProductId
    U: SeqNo
    u: SeqNo
    b: List[Tuple[Price, Size]]
    a: List[Tuple[Price, Size]]


class _FuturesDiff(Wire):
    E: Millis
    T: Millis
    s: ProductId
    U: SeqNo
    u: SeqNo
    pu: SeqNo
    b: List[Tuple[Price, Size]]
    a: List[Tuple[Price, Size]]


class _Trade(Wire):
    s: ProductId
    t: SeqNo
    p: Price
    q: TradeSize
    T: Millis
    m: bool


class _AggTrade(Wire):
    s: ProductId
    a: SeqNo
    p: Price
    q: TradeSize
    f: SeqNo
    l: SeqNo  # noqa: E741 (Binance's field name)
    T: Millis
    m: bool


class _MarkPrice(Wire):
    s: ProductId
    E: Millis
    p: Price
    i: Optional[Price] = None
    #: COIN-M delivery contracts have no funding: their events carry ``"r": ""``.
    r: Union[Funding, Literal[""], None] = None


class _Depth(Wire):
    lastUpdateId: SeqNo
    bids: List[Tuple[Price, Size]]
    asks: List[Tuple[Price, Size]]
    E: Optional[Millis] = None
    T: Optional[Millis] = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_EVENT = msgspec.json.Decoder(_Event)
_SPOT_DIFF = msgspec.json.Decoder(_SpotDiff, strict=False)
_FUTURES_DIFF = msgspec.json.Decoder(_FuturesDiff, strict=False)
_DEPTH = msgspec.json.Decoder(_Depth, strict=False)
_TRADE = msgspec.json.Decoder(_Trade, strict=False)
_AGG_TRADE = msgspec.json.Decoder(_AggTrade, strict=False)
_MARK_PRICE = msgspec.json.Decoder(_MarkPrice, strict=False)
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)
#: Event types of streams lobstream does not consume but that are legitimate.
OTHER_EVENTS = frozenset(("bookTicker", "kline", "24hrTicker", "24hrMiniTicker"))


def _parser(venue: str, futures: bool, units: Callable[[str], Tuple[str, float, bool]]):  # type: ignore[no-untyped-def]
    diff_decoder = _FUTURES_DIFF if futures else _SPOT_DIFF

    def trade(symbol: str, ident: str, seq: int, price: float, size: float, ts: float,
              buyer_maker: bool, ts_recv: float, fills: int) -> Trade:
        # ``m``: the buyer was the maker, so the seller was the aggressor.
        base, notional = amounts(*units(symbol), size, price)
        return Trade(venue, symbol, ts, ts_recv, ident, price, size,
                     "sell" if buyer_maker else "buy", base, notional, seq, fills)

    def parse(raw: Raw, ts_recv: float) -> Parsed:
        """Parse one raw frame of the combined stream."""
        try:
            env = _ENVELOPE.decode(raw)
        except _DECODE_ERRORS as ex:
            return _explain(raw, ex)
        if env.stream is not None and env.data:
            return _event(env.stream, env.data, ts_recv)
        if env.code is not None:
            detail = f"{env.code} {safe_text(env.msg)}"
            return Parsed(ERROR, None, [], ref=env.id, detail=detail, code=str(env.code))
        if env.id is not None:
            return Parsed(REPLY, None, [], ref=env.id)
        raise FrameError("unknown_type", "neither a stream event nor a reply")

    def _event(stream: str, data: msgspec.Raw, ts_recv: float) -> Parsed:
        try:
            kind = _EVENT.decode(data).e
        except _DECODE_ERRORS as ex:
            raise FrameError("bad_frame", f"{safe_text(stream, 60)}: {reason(ex)}") from None
        if kind == "depthUpdate":
            try:
                d = diff_decoder.decode(data)
            except _DECODE_ERRORS as ex:
                raise FrameError("bad_level", f"{safe_text(stream, 60)}: {reason(ex)}", None,
                                 _symbol(stream)) from None
            if futures:
                ev = BookEvent(UPDATE, venue, d.s, d.T, ts_recv, d.u, d.pu, d.b, d.a,
                               first_seq=d.U)
            else:
                ev = BookEvent(UPDATE, venue, d.s, d.E, ts_recv, d.u, d.U - 1, d.b, d.a,
                               first_seq=d.U)
            if d.U > d.u:
                raise FrameError("bad_seq", f"first update id {d.U} above last {d.u}", None,
                                 [d.s])
            return Parsed(BOOK, None, [ev])
        # A broken print or mark is counted and skipped; it names no product, as
        # it is no depth diff: the book it does not touch stays (a resync here
        # would cost a REST snapshot per broken event).
        if kind == "aggTrade" or kind == "trade":
            try:
                if kind == "aggTrade":
                    a = _AGG_TRADE.decode(data)
                    if a.l < a.f:
                        raise FrameError("bad_trade", f"last trade id {a.l} below first {a.f}")
                    t = trade(a.s, f"a{a.a}", a.a, a.p, a.q, a.T, a.m, ts_recv, a.l - a.f + 1)
                else:
                    r = _TRADE.decode(data)
                    t = trade(r.s, str(r.t), r.t, r.p, r.q, r.T, r.m, ts_recv, 1)
            except _DECODE_ERRORS as ex:
                raise FrameError("bad_trade", f"{safe_text(stream, 60)}: {reason(ex)}") from None
            return Parsed(TRADES, None, [t])
        if kind == "markPriceUpdate":
            try:
                mp = _MARK_PRICE.decode(data)
            except _DECODE_ERRORS as ex:
                raise FrameError("bad_ticker", f"{safe_text(stream, 60)}: {reason(ex)}") from None
            funding = None if mp.r == "" else mp.r
            return Parsed(TICKER, None, [Ticker(venue, mp.s, mp.E, ts_recv, mp.p, mp.i, funding,
                                                None)])
        if kind == "serverShutdown":
            return Parsed(RECONNECT, None, [], detail="the server announced a shutdown")
        if kind in OTHER_EVENTS or not kind:  # spot bookTicker events carry no "e"
            return Parsed(IGNORED, None, [])
        raise FrameError("unknown_type", f"unknown event {safe_text(kind, 40)!r}")

    def parse_rest(url: str, raw: Raw, ts_recv: float) -> Parsed:
        """A REST depth snapshot; its symbol comes from the request URL."""
        symbol = snapshot_symbol(url)
        if symbol is None:
            raise FrameError("bad_rest", f"not a depth request: {safe_text(url, 120)}")
        try:
            d = _DEPTH.decode(raw)
        except _DECODE_ERRORS as ex:
            raise FrameError("bad_level", f"depth snapshot: {reason(ex)}", None, [symbol]) \
                from None
        return Parsed(BOOK, None, [BookEvent(SNAPSHOT, venue, symbol, d.T or d.E, ts_recv,
                                             d.lastUpdateId, None, d.bids, d.asks)])

    return parse, parse_rest


def _symbol(stream: str) -> List[str]:
    name = valid_product(stream.split("@", 1)[0].upper())
    return [name] if name else []


def _explain(raw: Raw, ex: Exception) -> Parsed:
    msg = loads(raw)
    if not isinstance(msg, dict):
        raise FrameError("unknown_type", f"expected a JSON object, got {type(msg).__name__}")
    if "id" in msg and msg["id"] is not None and valid_seq(msg["id"]) is None:
        raise FrameError("bad_reply", f"request id is a {type(msg['id']).__name__}, "
                                      "not one lobstream sent")
    stream = msg.get("stream")
    if isinstance(stream, str):
        # It names no book: a trade or mark is not a diff, and had it been a diff
        # the next one would not chain (as for an unreadable event type).
        raise FrameError("bad_frame", f"{safe_text(stream, 60)}: {reason(ex)}")
    raise FrameError("unknown_type", f"unreadable message: {reason(ex)}")


def snapshot_symbol(url: str) -> Optional[str]:
    """The symbol of a ``/depth?symbol=...`` request URL."""
    query = parse_qs(urlsplit(url).query)
    symbols = query.get("symbol") or []
    return valid_product(symbols[0]) if len(symbols) == 1 else None


class BinanceProtocol(Protocol):
    """``SUBSCRIBE``/``UNSUBSCRIBE`` with ids; a book is resynchronised by a REST
    snapshot, not a resubscription, so :meth:`resubscribe` sends nothing."""

    def __init__(self, settings: Mapping[str, Any], suffixes: Sequence[str]) -> None:
        super().__init__(settings)
        #: The streams of each symbol: its depth diffs first, then trades, marks.
        self.suffixes = tuple(suffixes)
        self._ids = count(1)
        self._pending: "OrderedDict[int, Tuple[str, List[str]]]" = OrderedDict()

    def _requests(self, method: str, products: Sequence[str]) -> List[Message]:
        out = []
        per = max(1, STREAMS_PER_REQUEST // len(self.suffixes))
        for i in range(0, len(products), per):
            chunk = list(products[i:i + per])
            ident = next(self._ids)
            if len(self._pending) >= self.MAX_PENDING:
                self._pending.popitem(last=False)
                self.forgotten += 1
            self._pending[ident] = (method, chunk)
            out.append({"method": method, "id": ident, "params": [
                f"{p.lower()}{suffix}" for p in chunk for suffix in self.suffixes]})
        return out

    def open(self, products: Sequence[str]) -> List[Message]:
        return self.subscribe(products)

    def subscribe(self, products: Sequence[str]) -> List[Message]:
        return self._requests("SUBSCRIBE", products)

    def unsubscribe(self, products: Sequence[str]) -> List[Message]:
        return self._requests("UNSUBSCRIBE", products)

    def resubscribe(self, product: str) -> List[Message]:
        return []

    def reply(self, ref: Any, events: Sequence[Any] = ()) -> Reply:
        method, products = self._pending.pop(ref, ("", []))
        return Reply(products, False)

    def refused(self, ref: Any, detail: str) -> Optional[List[str]]:
        method, products = self._pending.pop(ref, ("", []))
        return products if method == "SUBSCRIBE" and products else None

    def reset(self) -> None:
        self._pending.clear()


def _depth_weight(limits: Tuple[Tuple[int, int], ...]):  # type: ignore[no-untyped-def]
    def weight(limit: int) -> int:
        return next(w for top, w in limits if limit <= top)
    return weight


_SYMBOL = re.compile(r"[A-Z0-9]{1,30}(?:_[A-Z0-9]{1,20})?")


def _linear(symbol: str) -> Tuple[str, float, bool]:
    return BASE, 1.0, False


def _coinm(symbol: str) -> Tuple[str, float, bool]:
    """COIN-M contracts are inverse, worth 100 USD for BTC and 10 USD for every
    other coin (the exchangeInfo ``contractSize`` of every listed contract)."""
    return CONTRACTS, 100.0 if symbol.startswith("BTC") else 10.0, True


def _spec(name: str, title: str, url: str, rest_url: str, depth_path: str, futures: bool,
          speeds: Tuple[str, ...], default_speed: str, max_limit: int,
          weights: Tuple[Tuple[int, int], ...], messages_per_second: float,
          rest_weight: int, example: str, trade_streams: Tuple[str, ...], default_trades: str,
          marks: bool) -> Venue:
    units = _coinm if name == "binance_coinm" else _linear
    parse, parse_rest = _parser(name, futures, units)

    def stream_suffixes(settings: Mapping[str, Any]) -> List[str]:
        speed = str(settings.get("speed", default_speed))
        # 1000 ms (spot) and 250 ms (futures) are the plain @depth stream.
        suffixes = ["@depth" if speed in ("1000ms", "250ms") else f"@depth@{speed}"]
        trades = str(settings.get("trades", default_trades))
        if trades != "off":
            suffixes.append(f"@{trades}")
        if marks and settings.get("tickers", True):
            suffixes.append("@markPrice@1s")
        return suffixes

    def protocol(settings: Mapping[str, Any]) -> BinanceProtocol:
        return BinanceProtocol(settings, stream_suffixes(settings))

    def snapshot_request(rest: str, product: str, settings: Mapping[str, Any]) -> Tuple[str, int]:
        limit = int(settings.get("snapshot_limit", 1000))
        return f"{rest}{depth_path}?symbol={product}&limit={limit}", _depth_weight(weights)(limit)

    return Venue(
        name=name, title=title, default_url=url, rest_url=rest_url, parse=parse,
        protocol=protocol,
        # 300 connection attempts per 5 minutes per IP (1/s); 1,024 streams per
        # connection; 5 (spot) or 10 (futures) incoming messages per second,
        # pings and pongs included: lobstream sends at most 80 % of that. REST
        # weight: spot 6,000 per minute per IP, futures 2,400.
        limits=Limits(max_connections=None, connects_per_second=0.5,
                      products_per_connection=100, max_products_per_connection=1024,
                      messages_per_second=messages_per_second,
                      channels_per_request=STREAMS_PER_REQUEST,
                      rest_weight_per_minute=rest_weight),
        default_products=("BTCUSDT", "ETHUSDT") if not name.endswith("coinm")
        else ("BTCUSD_PERP", "ETHUSD_PERP"),
        check_product=check_name(_SYMBOL, f"upper-case symbols such as {example}"),
        book_chain=chain_binance_futures if futures else chain_binance_spot,
        settings=(
            Setting("speed", default_speed, "diff depth stream speed", speeds),
            Setting("snapshot_limit", 1000, "levels per side in REST snapshots",
                    tuple(n for n in (100, 500, 1000, 5000) if n <= max_limit)),
            Setting("trades", default_trades, "which trade stream to follow (one per symbol, "
                    "never both: each print would count twice)", trade_streams + ("off",)),
        ) + ((Setting("tickers", True, "also follow markPrice@1s (mark, index, funding)"),)
             if marks else ()),
        hints=(("Invalid request", "check the symbols in the configuration"),),
        rest_snapshots=True,
        parse_rest=parse_rest,
        snapshot_request=snapshot_request,
        max_lifetime=23.5 * 3600.0,
    )


BINANCE = _spec("binance", "Binance spot", "wss://stream.binance.com:9443/stream",
                "https://api.binance.com", "/api/v3/depth", False, ("100ms", "1000ms"), "100ms",
                5000, ((100, 5), (500, 25), (1000, 50), (5000, 250)), 4.0, 6000, "BTCUSDT",
                ("aggTrade", "trade"), "aggTrade", False)
# USD-M: aggTrade and markPrice are /market-tier streams, which a /public
# connection never delivers; the /public @trade stream carries every print.
BINANCE_USDM = _spec("binance_usdm", "Binance USD-M futures",
                     "wss://fstream.binance.com/public/stream", "https://fapi.binance.com",
                     "/fapi/v1/depth", True, ("0ms", "100ms", "250ms", "500ms"), "100ms", 1000,
                     ((50, 2), (100, 5), (500, 10), (1000, 20)), 8.0, 2400, "BTCUSDT or BTCUSDT_210924",
                     ("trade",), "trade", False)
BINANCE_COINM = _spec("binance_coinm", "Binance COIN-M futures",
                      "wss://dstream.binance.com/stream", "https://dapi.binance.com",
                      "/dapi/v1/depth", True, ("0ms", "100ms", "250ms", "500ms"), "100ms", 1000,
                      ((50, 2), (100, 5), (500, 10), (1000, 20)), 8.0, 2400,
                      "BTCUSD_PERP or BTCUSD_210924",
                      ("aggTrade", "trade"), "aggTrade", True)


# -- historical candles (REST klines) ----------------------------------------------
# ``GET {rest}{path}?symbol=&interval=&startTime=&endTime=&limit=`` (times in ms,
# both inclusive), oldest first; each kline is an array: open time, open, high,
# low, close, volume, close time, quote volume, trades, taker buy volume, taker buy
# quote volume, ignore. COIN-M differs: volume and taker buy volume are contracts
# and the quote-volume column is the *base* volume. Spot: at most 1000 per request,
# weight 2; futures: at most 1500, weight 1/2/5/10 by limit (<100, <500, <=1000,
# more). lobstream spends half the venue's weight budget, and the used-weight header
# tightens it.
_KLINE_INTERVALS = {60_000: "1m", 180_000: "3m", 300_000: "5m", 900_000: "15m",
                    1_800_000: "30m", 3_600_000: "1h", 7_200_000: "2h", 14_400_000: "4h",
                    21_600_000: "6h", 28_800_000: "8h", 43_200_000: "12h", 86_400_000: "1d"}
_KlineTime = Annotated[int, msgspec.Meta(ge=0, le=4_102_444_800_000)]
_Kline = Tuple[_KlineTime, Price, Price, Price, Price, Size, _KlineTime, Size, SeqNo, Size,
               Size, Any]
_KLINES = msgspec.json.Decoder(List[_Kline], strict=False)


def _futures_kline_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _kline_api(venue: str, rest: str, path: str, max_candles: int, weight_per_minute: int,
               seconds: bool) -> CandleApi:
    coinm = venue == "binance_coinm"

    def request(product: str, start_ms: int, last_ms: int, interval: str,
                limit: int) -> Tuple[str, Dict[str, str]]:
        return path, {"symbol": product, "interval": interval, "startTime": str(start_ms),
                      "endTime": str(last_ms), "limit": str(limit)}

    def parse(body: bytes, product: str) -> List[Candle]:
        try:
            klines = _KLINES.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as ex:
            raise ValueError(f"{venue} klines for {product}: {ex}") from None
        size = _coinm(product)[1] if coinm else 0.0
        out = []
        for k in klines:
            if coinm:  # contracts -> USD notional; the base columns are the coin
                c = Candle(k[0], k[1], k[2], k[3], k[4], k[7], k[5] * size, k[8], k[10],
                           k[9] * size)
            else:
                c = Candle(k[0], k[1], k[2], k[3], k[4], k[5], k[7], k[8], k[9], k[10])
            out.append(check_candle(c))
        return out

    intervals = {**({1000: "1s"} if seconds else {}), **_KLINE_INTERVALS}
    return CandleApi(venue=venue, rest_url=rest, max_candles=max_candles, intervals=intervals,
                     request=request, parse=parse, rate=(weight_per_minute // 2, 60.0),
                     weight=(lambda limit: 2) if not venue.endswith(("usdm", "coinm"))
                     else _futures_kline_weight,
                     used_header="X-MBX-USED-WEIGHT-1M")


CANDLES = _kline_api("binance", "https://api.binance.com", "/api/v3/klines", 1000, 6000, True)
CANDLES_USDM = _kline_api("binance_usdm", "https://fapi.binance.com", "/fapi/v1/klines", 1500,
                          2400, False)
CANDLES_COINM = _kline_api("binance_coinm", "https://dapi.binance.com", "/dapi/v1/klines",
                           1500, 2400, False)

"""Coinbase Advanced Trade (``wss://advanced-trade-ws.coinbase.com``): the venue's home.

Wire format (docs.cdp.coinbase.com, Advanced Trade websocket channels): every
message is ``{channel, client_id, timestamp, sequence_num, events}``; book data
arrives on ``channel == "l2_data"`` as ``snapshot``/``update`` events whose
``updates[]`` carry ``side``, ``price_level`` and ``new_quantity`` (the new level
total; ``"0"`` removes it). The ask side is spelled ``offer`` on the wire (the
docs only show ``bid``; some clients expect ``ask``), so both are accepted.
Decimal values are strings; they are decoded straight to floats by msgspec, with
the bounds of :mod:`sources.venues.base`.

``sequence_num`` is one counter per connection across every channel, heartbeats
included. A gap therefore cannot be pinned on one product: every product on the
connection resyncs, and each resync re-sends a full snapshot (5 MB for BTC-USD).
That is why the default is one product per connection: a gap costs one snapshot,
and products spread freely over workers. Grouping (``products_per_connection``)
saves connections at the price of resyncing the whole group on any gap.

Subscribing: one channel per message; ``heartbeats`` must be subscribed or idle
channels close after 60-90 s. The server answers each (un)subscribe with a
``subscriptions`` message listing everything subscribed; errors are
``{"type": "error", "message": ...}`` without a request id, so they are pinned on
the oldest (un)subscribe still waiting for its answer.
"""

from __future__ import annotations

import re
from collections import deque
from typing import (Annotated, Any, Deque, Dict, List, Literal, Mapping, Optional, Sequence,
                    Tuple, Union)

import msgspec

from sources.venues.base import (ANY_PRODUCT, BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, TICKER,
                                 TRADES, FrameError, Limits, Message, Parsed, Price, ProductId,
                                 Protocol, Raw, Reply, SeqNo, Setting, Size, TradeId, TradeSize,
                                 Venue, Wire, check_name, iso_ms, loads, reason, safe_text,
                                 valid_product, valid_seq)
from sources.candles.model import Candle, CandleApi, check_candle
from state.events import SNAPSHOT, UPDATE, BookEvent, Level, Ticker, Trade

VENUE = "coinbase"
DEFAULT_URL = "wss://advanced-trade-ws.coinbase.com"

#: Exchange times before this are placeholders (snapshot levels carry 1970-01-01).
_EPOCH_PLACEHOLDER = "1970-"


class _Level(Wire):
    side: Literal["bid", "offer", "ask"]
    price_level: Price
    new_quantity: Size


class _Update(_Level):
    #: Only the first update's time is used; it is parsed (and validated) then.
    event_time: str = ""


class _L2Event(Wire, tag_field="type"):
    product_id: ProductId


class _L2Snapshot(_L2Event, tag="snapshot"):
    #: A snapshot's time is the frame's: its levels' ``event_time`` is skipped
    #: unread (46,000 strings less to build for the BTC-USD snapshot: 140 -> 126
    #: million instructions for its decode, measured with callgrind).
    updates: List[_Level]


class _L2Update(_L2Event, tag="update"):
    updates: List[_Update]


class _Frame(Wire, tag_field="channel"):
    sequence_num: SeqNo


class _L2Data(_Frame, tag="l2_data"):
    #: Parsed only where it is the event's time (snapshots).
    timestamp: str
    events: List[Union[_L2Snapshot, _L2Update]]


class _Trade(Wire):
    trade_id: TradeId
    product_id: ProductId
    price: Price
    size: TradeSize
    side: Literal["BUY", "SELL"]
    time: str


class _TradesEvent(Wire):
    trades: List[_Trade]


class _MarketTrades(_Frame, tag="market_trades"):
    events: List[_TradesEvent]


class _Tick(Wire):
    product_id: ProductId
    price: Price


class _TickerEvent(Wire):
    tickers: List[_Tick]


class _Ticker(_Frame, tag="ticker"):
    timestamp: str
    events: List[_TickerEvent]


class _TickerBatch(_Ticker, tag="ticker_batch"):
    pass


class _Heartbeats(_Frame, tag="heartbeats"):
    timestamp: str = ""


class _Subscriptions(_Frame, tag="subscriptions"):
    pass


def _other(name: str) -> type:
    """A channel lobstream does not consume: only its ``sequence_num`` matters."""
    return msgspec.defstruct(f"_{name.title().replace('_', '')}", [], bases=(_Frame,), tag=name)


#: Channels lobstream does not consume but that are legitimate traffic.
OTHER_CHANNELS = ("candles", "status")
_DECODER = msgspec.json.Decoder(
    Union[(_L2Data, _MarketTrades, _Ticker, _TickerBatch, _Heartbeats, _Subscriptions)
          + tuple(_other(c) for c in OTHER_CHANNELS)],
    strict=False)
#: ``market_trades`` ``side`` is the maker's side (BUY: a resting bid was hit), so
#: the aggressor is the other one. Measured on the bundled recording: 23 of 28 BUY
#: prints at or below the best bid, 48 of 50 SELL prints at or above the best ask
#: (tests/test_trades.py checks it against the book).
_AGGRESSOR = {"BUY": "sell", "SELL": "buy"}
_KINDS = {"snapshot": SNAPSHOT, "update": UPDATE}


def parse(raw: Raw, ts_recv: float) -> Parsed:
    """Parse one raw Advanced Trade frame."""
    try:
        frame = _DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as ex:
        return _explain(raw, ex)
    seq = frame.sequence_num
    kind = type(frame)
    if kind is _L2Data:
        return Parsed(BOOK, seq, [_book_event(ev, frame, ts_recv) for ev in frame.events])
    if kind is _MarketTrades:
        return Parsed(TRADES, seq, _trades(frame, ts_recv))
    if kind is _Ticker or kind is _TickerBatch:
        return Parsed(TICKER, seq, _tickers(frame, ts_recv))
    if kind is _Heartbeats:
        return Parsed(HEARTBEAT, seq, [], ts=_time(frame.timestamp, seq) if frame.timestamp
                      else None)
    if type(frame) is _Subscriptions:
        return Parsed(REPLY, seq, [])
    return Parsed(IGNORED, seq, [])


def _book_event(ev: Union[_L2Snapshot, _L2Update], frame: _L2Data,
                ts_recv: float) -> BookEvent:
    if type(ev) is _L2Snapshot:
        return BookEvent(SNAPSHOT, VENUE, ev.product_id, _frame_time(frame), ts_recv,
                         frame.sequence_num, None, *_snapshot_sides(ev.updates))
    bids: List[Level] = []
    asks: List[Level] = []
    updates = ev.updates
    for u in updates:
        if u.side == "bid":
            bids.append((u.price_level, u.new_quantity))
        else:
            asks.append((u.price_level, u.new_quantity))
    first = updates[0].event_time if updates else ""
    placeholder = not first or first.startswith(_EPOCH_PLACEHOLDER)
    return BookEvent(UPDATE, VENUE, ev.product_id,
                     _frame_time(frame, None if placeholder else first), ts_recv,
                     frame.sequence_num, None, bids, asks)


def _snapshot_sides(levels: List[_Level]) -> Tuple[Dict[float, float], Dict[float, float]]:
    """A snapshot's two sides as ``price -> size`` dicts without zero sizes (what
    :meth:`state.book.OrderBook.replace` builds its book from): one store per
    level instead of a tuple, an append and later a second dict built from the
    tuples (BTC-USD's 46,000 levels: 49 + 35 -> 44 million instructions, and no
    tracked tuples to wake the garbage collector). A price given twice keeps its
    last non-zero size, as the book did from level lists."""
    bids: Dict[float, float] = {}
    asks: Dict[float, float] = {}
    for u in levels:
        size = u.new_quantity
        if size > 0.0:
            (bids if u.side == "bid" else asks)[u.price_level] = size
    return bids, asks


def _frame_time(frame: _L2Data, text: Optional[str] = None) -> float:
    """``text`` (default: the frame's ``timestamp``) in ms; a bad time costs every
    product of the frame its book."""
    try:
        return iso_ms(frame.timestamp if text is None else text)
    except ValueError as ex:
        raise FrameError("bad_time", reason(ex), frame.sequence_num,
                         list(dict.fromkeys(e.product_id for e in frame.events))) from None


def _time(text: str, seq: int, products: Sequence[str] = ()) -> float:
    try:
        return iso_ms(text)
    except ValueError as ex:
        raise FrameError("bad_time", reason(ex), seq, list(products)) from None


def _trades(frame: _MarketTrades, ts_recv: float) -> List[Trade]:
    seq = frame.sequence_num
    out = []
    for ev in frame.events:
        for t in ev.trades:
            out.append(Trade(VENUE, t.product_id, _time(t.time, seq), ts_recv, t.trade_id,
                             t.price, t.size, _AGGRESSOR[t.side], t.size, t.size * t.price))
    return out


def _tickers(frame: _Ticker, ts_recv: float) -> List[Ticker]:
    ts = _time(frame.timestamp, frame.sequence_num)
    return [Ticker(VENUE, t.product_id, ts, ts_recv, None, None, None, t.price)
            for ev in frame.events for t in ev.tickers]


def _explain(raw: Raw, ex: Exception) -> Parsed:
    """The slow path: say what is wrong with a frame the typed decode rejected,
    with the sequence number and products it concerned where they can be read."""
    msg = loads(raw)
    if not isinstance(msg, dict):
        raise FrameError("unknown_type", f"expected a JSON object, got {type(msg).__name__}",
                         products=ANY_PRODUCT)
    channel = msg.get("channel")
    seq = valid_seq(msg.get("sequence_num"))
    if channel is None and msg.get("type") == "error":
        text = safe_text(msg.get("message", "error"))
        extra = msg.get("reason")
        detail = f"{text}: {safe_text(extra)}" if isinstance(extra, str) and extra else text
        return Parsed(ERROR, None, [], detail=detail, code=text[:60])
    if not isinstance(channel, str):
        raise FrameError("unknown_type", f"channel is a {type(channel).__name__}, not a string",
                         seq, ANY_PRODUCT)
    if seq is None:
        raise FrameError("bad_seq", f"{safe_text(channel, 40)}: {reason(ex)}")
    if channel == "l2_data":
        events = msg.get("events")
        events = events if isinstance(events, list) else []
        named = [valid_product(e.get("product_id")) if isinstance(e, dict) else None
                 for e in events]
        # An event whose product cannot be read may have been any product's update.
        products = None if None in named or not events else list(dict.fromkeys(named))
        events = [e for e in events if isinstance(e, dict)]
        # Decoded values may be lists or objects: never hash them (``in`` a dict).
        odd = next((t for t in (e.get("type") for e in events)
                    if not (isinstance(t, str) and t in _KINDS)), None)
        if odd is not None:
            raise FrameError("unknown_type", f"unknown l2_data event type "
                             f"{safe_text(odd, 40)!r}", seq, products)
        raise FrameError("bad_level", f"l2_data: {reason(ex)}", seq, products)
    if channel in ("market_trades", "ticker", "ticker_batch"):
        events = msg.get("events")
        events = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        lists = [e.get("trades") or e.get("tickers") for e in events]
        items = [i for items in lists if isinstance(items, list) for i in items
                 if isinstance(i, dict)]
        products = list(dict.fromkeys(p for p in (valid_product(i.get("product_id"))
                                                  for i in items) if p))
        raise FrameError("bad_trade" if channel == "market_trades" else "bad_ticker",
                         f"{channel}: {reason(ex)}", seq, products)
    if channel in OTHER_CHANNELS or channel in ("heartbeats", "subscriptions"):
        raise FrameError("bad_frame", f"{channel}: {reason(ex)}", seq)
    # The frame still used up a sequence_num: pass it on so it is not taken for a gap.
    raise FrameError("unknown_type", f"unknown channel {safe_text(channel, 40)!r}", seq)


class CoinbaseProtocol(Protocol):
    """Subscribes ``level2`` and ``heartbeats`` (plus ``market_trades`` and
    ``ticker`` when configured), one channel per message; pins replies and errors
    on the oldest request still waiting (the server answers in order, without ids).
    A resync resubscribes ``level2`` only: the trades' own snapshot would only
    resend trades already counted."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.channels = ["level2"] + (["market_trades"] if settings.get("trades", True) else []) \
            + (["ticker"] if settings.get("tickers", False) else [])
        #: (is_subscribe, products) per request awaiting its ``subscriptions`` answer.
        self._pending: Deque[Tuple[bool, List[str]]] = deque()

    def _track(self, message: Message, subscribe: bool, products: Sequence[str]) -> Message:
        if len(self._pending) >= self.MAX_PENDING:
            self._pending.popleft()
            self.forgotten += 1
        self._pending.append((subscribe, list(products)))
        return message

    def open(self, products: Sequence[str]) -> List[Message]:
        return [self._track({"type": "subscribe", "channel": "heartbeats"}, True, [])
                ] + self.subscribe(products)

    def _each(self, kind: str, products: Sequence[str], channels: Sequence[str]) -> List[Message]:
        if not products:
            return []
        return [self._track({"type": kind, "product_ids": list(products), "channel": c},
                            kind == "subscribe", products) for c in channels]

    def subscribe(self, products: Sequence[str]) -> List[Message]:
        return self._each("subscribe", products, self.channels)

    def unsubscribe(self, products: Sequence[str]) -> List[Message]:
        return self._each("unsubscribe", products, self.channels)

    def resubscribe(self, product: str) -> List[Message]:
        return (self._each("unsubscribe", [product], ["level2"])
                + self._each("subscribe", [product], ["level2"]))

    def reply(self, ref: Any, events: Sequence[Any] = ()) -> Reply:
        # Coinbase may send the snapshot before or after the confirmation, so a
        # confirmation never means "the snapshot is next".
        if self._pending:
            _, products = self._pending.popleft()
            return Reply(products, False)
        return Reply([], False)

    def refused(self, ref: Any, detail: str) -> Optional[List[str]]:
        if not self._pending:
            return None
        subscribe, products = self._pending.popleft()
        if not subscribe or not products:
            return None
        named = [p for p in products if p in detail]
        return named or products

    def reset(self) -> None:
        self._pending.clear()


#: Coinbase product ids, ``BASE-QUOTE`` (Coinbase Exchange uses the same).
CHECK_PRODUCT = check_name(re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}"),
                           "BASE-QUOTE product ids such as BTC-USD")


VENUE_SPEC = Venue(
    name=VENUE,
    title="Coinbase Advanced Trade",
    default_url=DEFAULT_URL,
    rest_url="https://api.coinbase.com",
    parse=parse,
    protocol=CoinbaseProtocol,
    # ⚠ Coinbase documents 8 new connections/s per IP on one page and 750/s on
    # another, and 8 unauthenticated messages/s per IP: lobstream stays at half
    # the smaller figures. No per-IP connection cap is documented.
    limits=Limits(max_connections=None, connects_per_second=4.0, products_per_connection=1,
                  max_products_per_connection=100, messages_per_second=4.0),
    default_products=("BTC-USD", "ETH-USD"),
    check_product=CHECK_PRODUCT,
    connection_sequence=True,
    settings=(
        Setting("trades", True, "also follow market_trades (trade prints, bars)"),
        Setting("tickers", False, "also follow ticker (last price in bars)"),
    ),
    hints=(
        ("authentication", "this channel needs credentials; use a public channel"),
        ("unknown product", "check the product names in the configuration"),
    ),
)


# -- historical candles (REST) -----------------------------------------------------
# Public market-data endpoint, no authentication: up to 350 candles per request
# (⚠ the page states the limit; the older Exchange API allowed 300), newest first,
# ``start``/``end`` in epoch seconds, prices and base volume as strings. Public
# REST is limited to 10 requests/s per IP: lobstream sends at most 5.
REST_URL = "https://api.coinbase.com"
_GRANULARITIES = {60_000: "ONE_MINUTE", 300_000: "FIVE_MINUTE", 900_000: "FIFTEEN_MINUTE",
                  1_800_000: "THIRTY_MINUTE", 3_600_000: "ONE_HOUR", 7_200_000: "TWO_HOUR",
                  21_600_000: "SIX_HOUR", 86_400_000: "ONE_DAY"}


class _Candle(msgspec.Struct):
    start: Annotated[int, msgspec.Meta(ge=0, le=4_102_444_800)]
    low: Price
    high: Price
    open: Price
    close: Price
    volume: Size


class _Candles(msgspec.Struct):
    candles: List[_Candle]


_CANDLES = msgspec.json.Decoder(_Candles, strict=False)


def _candles_request(product: str, start_ms: int, last_ms: int, granularity: str,
                     limit: int) -> Tuple[str, Dict[str, str]]:
    return (f"/api/v3/brokerage/market/products/{product}/candles",
            {"start": str(start_ms // 1000), "end": str(last_ms // 1000),
             "granularity": granularity, "limit": str(limit)})


def parse_candles(body: bytes, product: str) -> List[Candle]:
    try:
        reply = _CANDLES.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as ex:
        raise ValueError(f"coinbase candles for {product}: {ex}") from None
    return [check_candle(Candle(c.start * 1000, c.open, c.high, c.low, c.close, c.volume))
            for c in reply.candles]


CANDLES = CandleApi(venue=VENUE, rest_url=REST_URL, max_candles=350, intervals=_GRANULARITIES,
                    request=_candles_request, parse=parse_candles, rate=(5, 1.0))

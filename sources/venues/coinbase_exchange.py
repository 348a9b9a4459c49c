"""Coinbase Exchange (``wss://ws-feed.exchange.coinbase.com``): the venue's home.

Wire format (docs.cdp.coinbase.com, Exchange websocket channels): every message is
a flat object with a ``type``. A book starts with ``snapshot`` (``bids``/``asks`` as
``[price, size]``), then ``l2update`` messages whose ``changes`` are
``[side, price, size]`` with side ``buy``/``sell`` and ``size`` the new level total
(``"0"`` removes it). ``level2_batch`` has exactly ``level2``'s schema, sent in
50 ms batches; ``level2`` itself needs authentication since 2023-08-01: an
unauthenticated ``level2`` subscribe is answered with an ``error``, so the
configuration only offers ``level2`` with credentials.

Authentication (Exchange websocket docs, "Authentication"): with credentials
(API key, base64 secret, passphrase) every ``subscribe`` carries ``key``,
``passphrase``, ``timestamp`` (seconds, as a string) and ``signature``: the
base64 HMAC-SHA256, keyed with the base64-decoded secret, of
``timestamp + "GET" + "/users/self/verify"``. The server refuses a timestamp more
than 30 s from its clock. A refused signature is an ``error`` whose ``message``
is ``Sorry, you could not be authenticated: Bad Request`` and whose ``reason``
says why (``request timestamp expired``, ``invalid signature``, as observed in
client projects' issue reports). :data:`REDACTION` blanks the key, passphrase
and signature out of recorded frames.

Limitation: ``snapshot`` and ``l2update`` carry no sequence number (only the
``full`` channel does), so a dropped ``l2update`` cannot be detected from the
stream and ``seq`` is always None. lobstream relies on the feed's delivery
guarantee and rebuilds every book from the fresh snapshot that the resubscription
after a disconnect brings. Heartbeats do carry a ``sequence``, but it is the
product's position in the full feed, which moves by more than one between
heartbeats, so it cannot reveal a lost book update either. Because nothing can be
resynchronised per product, products share connections (10 by default): a
reconnect rebuilds the group either way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import deque
from datetime import datetime
from typing import (Annotated, Any, Callable, Deque, Dict, List, Literal, Mapping, Optional,
                    Sequence, Tuple, Union)

import msgspec

from sources.venues.base import (ANY_PRODUCT, BOOK, ERROR, HEARTBEAT, IGNORED, MAX_MS, MIN_MS,
                                 REPLY, TICKER, TRADES, CredentialField, FrameError, Limits,
                                 Message, Parsed, Price, ProductId, Protocol, Raw, Reply, SeqNo,
                                 Setting, Size, TradeSize, Venue, Wire, loads, reason,
                                 safe_text, valid_product)
from sources.venues.coinbase import CHECK_PRODUCT
from sources.venues.credentials import Credentials, Redaction, credentials
from state.events import SNAPSHOT, UPDATE, BookEvent, Level, Ticker, Trade

VENUE = "coinbase_exchange"
DEFAULT_URL = "wss://ws-feed.exchange.coinbase.com"
DEFAULT_CHANNEL = "level2_batch"
#: The book channel that needs credentials.
AUTH_CHANNEL = "level2"
HEARTBEAT_CHANNEL = "heartbeat"
#: What a signed subscribe signs, after its timestamp (the REST identity check).
SIGNED_PATH = "GET/users/self/verify"
#: What carries a secret in Exchange frames: the fields of a signed subscribe.
REDACTION = Redaction(("signature", "key", "passphrase"), needles=(b"signature", b"passphrase"))

UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]


class _Message(Wire, tag_field="type"):
    pass


class _Snapshot(_Message, tag="snapshot"):
    product_id: ProductId
    bids: List[Tuple[Price, Size]]
    asks: List[Tuple[Price, Size]]


class _L2Update(_Message, tag="l2update"):
    product_id: ProductId
    time: UtcTime
    changes: List[Tuple[Literal["buy", "sell"], Price, Size]]


class _Match(_Message, tag="match"):
    trade_id: SeqNo
    product_id: ProductId
    time: UtcTime
    price: Price
    size: TradeSize
    side: Literal["buy", "sell"]


class _LastMatch(_Match, tag="last_match"):
    pass


class _Tick(_Message, tag="ticker"):
    product_id: ProductId
    price: Price
    time: Optional[UtcTime] = None


class _Heartbeat(_Message, tag="heartbeat"):
    time: Optional[UtcTime] = None


class _Subscriptions(_Message, tag="subscriptions"):
    pass


#: Message types of channels lobstream does not consume but that are legitimate traffic.
OTHER_TYPES = ("status", "auction", "rfq_match")
#: A ``match``'s ``side`` is the maker's order side ("sell" is an up-tick: a buyer
#: took a resting sell), so the aggressor is the other side (Exchange websocket
#: channels, matches; tests/test_trades.py checks it against the book).
_AGGRESSOR = {"buy": "sell", "sell": "buy"}
_DECODER = msgspec.json.Decoder(
    Union[(_Snapshot, _L2Update, _Match, _LastMatch, _Tick, _Heartbeat, _Subscriptions) + tuple(
        msgspec.defstruct(f"_{t.title()}", [], bases=(_Message,), tag=t) for t in OTHER_TYPES)],
    strict=False)


def _ms(time: datetime, products: List[str]) -> float:
    """``time`` in ms, bounded: the lax decoder also reads a number of seconds, so
    ``"time": 0`` would otherwise become 1970. Bounded here rather than parsed by
    iso_ms because msgspec reads the RFC 3339 text in C (iso_ms made an l2update a
    third slower: 4.6 against 3.4 us). A bad time in a book update costs the book
    (``products``); in a trade, ticker or heartbeat only that frame."""
    ms = time.timestamp() * 1000.0
    if not MIN_MS <= ms <= MAX_MS:
        raise FrameError("bad_time", f"implausible time {ms:.0f} ms", None, products)
    return ms


def parse(raw: Raw, ts_recv: float) -> Parsed:
    """Parse one raw Exchange frame."""
    try:
        msg = _DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as ex:
        return _explain(raw, ex)
    kind = type(msg)
    if kind is _L2Update:
        bids: List[Level] = []
        asks: List[Level] = []
        for side, price, size in msg.changes:
            (bids if side == "buy" else asks).append((price, size))
        ts_exchange = _ms(msg.time, [msg.product_id])
        return Parsed(BOOK, None, [BookEvent(UPDATE, VENUE, msg.product_id, ts_exchange, ts_recv,
                                             None, None, bids, asks)])
    if kind is _Snapshot:
        # A snapshot has no time of its own on the wire.
        return Parsed(BOOK, None, [BookEvent(SNAPSHOT, VENUE, msg.product_id, None, ts_recv,
                                             None, None, msg.bids, msg.asks)])
    if kind is _LastMatch:
        # The trade before the subscription started (minutes old, typically): it
        # is history the stream does not cover, not a print to count into bars.
        return Parsed(IGNORED, None, [])
    if kind is _Match:
        return Parsed(TRADES, None, [Trade(VENUE, msg.product_id, _ms(msg.time, []), ts_recv,
                                           str(msg.trade_id), msg.price, msg.size,
                                           _AGGRESSOR[msg.side], msg.size, msg.size * msg.price,
                                           msg.trade_id)])
    if kind is _Tick:
        ts = _ms(msg.time, []) if msg.time is not None else ts_recv
        return Parsed(TICKER, None, [Ticker(VENUE, msg.product_id, ts, ts_recv, None, None, None,
                                            msg.price)])
    if kind is _Heartbeat:
        return Parsed(HEARTBEAT, None, [],
                      ts=_ms(msg.time, []) if msg.time is not None else None)
    if kind is _Subscriptions:
        return Parsed(REPLY, None, [])
    return Parsed(IGNORED, None, [])


def _explain(raw: Raw, ex: Exception) -> Parsed:
    """The slow path: errors, unknown types, and broken book messages (which name
    the product they would have changed)."""
    msg = loads(raw)
    if not isinstance(msg, dict):
        raise FrameError("unknown_type", f"expected a JSON object, got {type(msg).__name__}",
                         products=ANY_PRODUCT)
    kind = msg.get("type")
    if kind == "error":
        text = safe_text(msg.get("message", "error"))
        extra = msg.get("reason")
        detail = f"{text}: {safe_text(extra)}" if isinstance(extra, str) and extra else text
        return Parsed(ERROR, None, [], detail=detail, code=text[:60])
    if kind in ("snapshot", "l2update", "match", "last_match", "ticker"):
        product = valid_product(msg.get("product_id"))
        if kind in ("snapshot", "l2update"):
            raise FrameError("bad_level", f"{kind}: {reason(ex)}", None,
                             [product] if product else ANY_PRODUCT)
        # A broken trade or ticker is counted; the book it does not touch stays.
        what = "bad_ticker" if kind == "ticker" else "bad_trade"
        raise FrameError(what, f"{kind}: {reason(ex)}", None, [])
    if isinstance(kind, str) and (kind in OTHER_TYPES or kind in ("heartbeat", "subscriptions")):
        raise FrameError("bad_frame", f"{kind}: {reason(ex)}")
    if not isinstance(kind, str):
        # Nothing numbers this venue's book messages, so a lost update would go
        # unnoticed: a frame whose type cannot be read counts against every book.
        raise FrameError("unknown_type", f"unknown message type <{type(kind).__name__}>", None,
                         ANY_PRODUCT)
    # A type the exchange added (or a channel lobstream does not subscribe): not a book's.
    raise FrameError("unknown_type", f"unknown message type {safe_text(kind, 40)}")


def signature(secret: str, timestamp: str) -> str:
    """The ``signature`` of a subscribe sent at ``timestamp`` with the base64 API
    ``secret``."""
    message = (timestamp + SIGNED_PATH).encode()
    digest = hmac.new(base64.b64decode(secret), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed(creds: Credentials, timestamp: str) -> Dict[str, str]:
    """The fields that authenticate a subscribe sent at ``timestamp``."""
    return {"signature": signature(creds.reveal("secret"), timestamp),
            "key": creds.reveal("key"), "passphrase": creds.reveal("passphrase"),
            "timestamp": timestamp}


class CoinbaseExchangeProtocol(Protocol):
    """One subscribe carries the book channel and ``heartbeat`` for every product;
    errors carry no request id and are pinned on the oldest subscribe waiting.
    With credentials every subscribe is signed, at the time it is built
    (:attr:`clock`, seconds): the feed hands it to the socket at once, well
    inside the server's 30 s window."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.channel = str(settings.get("channel", DEFAULT_CHANNEL))
        self.extra = (["matches"] if settings.get("trades", True) else []) \
            + (["ticker"] if settings.get("tickers", False) else [])
        self._credentials = credentials(settings)
        self.clock: Callable[[], float] = time.time
        self._pending: Deque[Tuple[bool, List[str]]] = deque()

    def _message(self, kind: str, products: Sequence[str],
                 channels: List[str]) -> List[Message]:
        if not products:
            return []
        if len(self._pending) >= self.MAX_PENDING:
            self._pending.popleft()
            self.forgotten += 1
        self._pending.append((kind == "subscribe", list(products)))
        message: Message = {"type": kind, "product_ids": list(products), "channels": channels}
        if kind == "subscribe" and self._credentials is not None:
            message.update(signed(self._credentials, f"{self.clock():.0f}"))
        return [message]

    def open(self, products: Sequence[str]) -> List[Message]:
        return self._message("subscribe", products,
                             [self.channel, HEARTBEAT_CHANNEL] + self.extra)

    def subscribe(self, products: Sequence[str]) -> List[Message]:
        return self._message("subscribe", products, [self.channel] + self.extra)

    def unsubscribe(self, products: Sequence[str]) -> List[Message]:
        return self._message("unsubscribe", products, [self.channel] + self.extra)

    def resubscribe(self, product: str) -> List[Message]:
        return (self._message("unsubscribe", [product], [self.channel])
                + self._message("subscribe", [product], [self.channel]))

    def reply(self, ref: Any, events: Sequence[Any] = ()) -> Reply:
        if self._pending:
            return Reply(self._pending.popleft()[1], False)
        return Reply([], False)

    def refused(self, ref: Any, detail: str) -> Optional[List[str]]:
        if not self._pending:
            return None
        subscribe, products = self._pending.popleft()
        if not subscribe:
            return None
        named = [p for p in products if p in detail]
        return named or products

    def reset(self) -> None:
        self._pending.clear()


def _check_secret(value: str) -> Optional[str]:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "is not base64: Coinbase shows the API secret base64-encoded, paste it unchanged"
    return None


VENUE_SPEC = Venue(
    name=VENUE,
    title="Coinbase Exchange",
    default_url=DEFAULT_URL,
    rest_url="https://api.exchange.coinbase.com",
    parse=parse,
    protocol=CoinbaseExchangeProtocol,
    # 8 requests/s per IP with bursts of 20, at most 100 client messages/s per IP;
    # no documented connection cap. Half of each, to leave room for other clients.
    limits=Limits(max_connections=None, connects_per_second=4.0, products_per_connection=10,
                  max_products_per_connection=100, messages_per_second=4.0),
    default_products=("BTC-USD", "ETH-USD"),
    check_product=CHECK_PRODUCT,  # Advanced Trade's product ids
    settings=(Setting("channel", DEFAULT_CHANNEL, "book channel (level2 needs credentials)",
                      (DEFAULT_CHANNEL, AUTH_CHANNEL), needs_credentials=(AUTH_CHANNEL,)),
              Setting("trades", True, "also follow matches (trade prints, bars)"),
              Setting("tickers", False, "also follow ticker (last price in bars)")),
    hints=(
        ("channels now require authentication", "level2 needs credentials: set "
         "LOBSTREAM_COINBASE_EXCHANGE_KEY, _SECRET and _PASSPHRASE (or "
         "coinbase_exchange.credentials_file), or use level2_batch "
         "(coinbase_exchange.channel = \"level2_batch\")"),
        ("timestamp expired", "this machine's clock is more than 30 s away from Coinbase's: "
         "synchronise it (NTP), then restart"),
        ("invalid signature", "Coinbase refused the signature: check "
         "LOBSTREAM_COINBASE_EXCHANGE_SECRET (or the file in "
         "coinbase_exchange.credentials_file) against the API key, then restart"),
        ("Invalid API Key", "Coinbase does not know LOBSTREAM_COINBASE_EXCHANGE_KEY: check it "
         "(or the file in coinbase_exchange.credentials_file), then restart"),
        ("Invalid Passphrase", "check LOBSTREAM_COINBASE_EXCHANGE_PASSPHRASE (or the file in "
         "coinbase_exchange.credentials_file), then restart"),
        ("could not be authenticated", "check the Coinbase Exchange credentials, then restart"),
        ("not a valid product", "check the product names in the configuration"),
    ),
    credentials=(CredentialField("key", "the API key"),
                 CredentialField("secret", "the API secret (base64, as Coinbase shows it)",
                                 _check_secret),
                 CredentialField("passphrase", "the passphrase chosen with the key")),
    redact=REDACTION,
)

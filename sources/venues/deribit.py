"""Deribit JSON-RPC v2 (``wss://www.deribit.com/ws/api/v2``): the venue's home.

Wire format (docs.deribit.com, subscriptions/orderbook): notifications are
``{"method": "subscription", "params": {"channel", "data"}}``; ``data`` carries
``instrument_name``, ``timestamp`` (ms), ``change_id``, and on every message but the
first ``prev_change_id``, which must equal the previous ``change_id``. Entries are
``[action, price, amount]`` with action ``new``/``change``/``delete`` and ``amount``
the new level total. The first message is the full book: it is recognised by the
missing ``prev_change_id`` (older API versions omit ``type``). Numbers are JSON
numbers on this venue, so the decoder is strict: a price written as a string is
bad input here.

Two book channels:

* ``book.{instrument}.{interval}`` (``100ms``; ``agg2``; ``raw`` needs
  authentication): a snapshot, then chained changes. The chain is per instrument,
  so one instrument's gap resubscribes that instrument alone while the others on
  the connection keep streaming.
* ``book.{instrument}.none.{depth}.{interval}`` (``depth`` 1, 10 or 20): every
  notification is a complete top-N book of ``[price, amount]`` pairs without
  ``prev_change_id``. Each one replaces the book (:data:`~state.events.REFRESH`),
  there is no chain to check, and summaries say the book is depth-limited.

One connection carries many instruments: ``public/subscribe`` takes up to 500
channels per request. Deribit allows 32 connections per IP and answers every
request with its ``id``; heartbeats are switched on with ``public/set_heartbeat``
and each ``test_request`` must be answered with ``public/test`` or the server
closes the connection.

Authentication (docs.deribit.com, ``public/auth``), when the connection has
credentials: ``client_credentials`` (client id and secret) is the first request
after the heartbeat, on every connection, and the subscriptions wait for its
answer, whose ``result`` holds ``access_token``, ``refresh_token`` and
``expires_in`` (seconds). Before the token expires the connection trades its
refresh token for new ones (grant ``refresh_token``); a refused refresh falls
back on the client credentials. Errors: ``13004 invalid_credentials`` (wrong
id or secret), ``13009 unauthorized`` (a token that is no longer valid; newer
docs call it ``invalid_token``). With a token, ``raw`` books and trades are
served. The tokens live only in the connection's :class:`DeribitProtocol`, as
:class:`~sources.venues.credentials.Secret`, and :data:`REDACTION` blanks them
(and the client secret) out of recorded and sampled frames.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from itertools import count
from typing import (Annotated, Any, Dict, List, Literal, Mapping, NamedTuple, Optional, Sequence,
                    Tuple)

import msgspec

from sources.instruments.model import BASE, QUOTE, amounts
from sources.venues.base import (BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, TEST_REQUEST, TICKER,
                                 TRADES, FrameError, Funding, Limits, Message, Millis, Parsed,
                                 Price, ProductId, Protocol, Raw, Reply, SeqNo, Setting, Size,
                                 TradeSize, TradeId, Venue, CredentialField, Wire, check_name,
                                 loads, reason, safe_text, valid_product, valid_seq)
from sources.candles.model import Candle, CandleApi, check_candle
from sources.venues.credentials import Redaction, Secret, credentials
from state.events import REFRESH, SNAPSHOT, UPDATE, BookEvent, Level, Ticker, Trade
from state.sync import chain_exact

VENUE = "deribit"
DEFAULT_URL = "wss://www.deribit.com/ws/api/v2"
DEFAULT_INTERVAL = "100ms"
#: Book intervals a public (unauthenticated) client may subscribe; ``raw`` needs a token.
INTERVALS = ("100ms", "agg2")
RAW = "raw"
#: Depths of the grouped channel; 0 means the plain (full, chained) book channel.
GROUPED_DEPTHS = (0, 1, 10, 20)
#: The grouped channels' depths as the channel name spells them. A lookup, not
#: ``int()``: ``str.isdigit`` also takes ``"²"`` and ``"١٠"``, and ``int("²")`` raises.
_DEPTHS = {str(d): d for d in GROUPED_DEPTHS if d}
#: Seconds between the server's heartbeats; 10 is the server's minimum.
HEARTBEAT_INTERVAL = 10
#: Channels per ``public/subscribe`` (the documented maximum is 500).
CHANNELS_PER_REQUEST = 500
#: A token is refreshed when a fifth of its lifetime is left, but at least this
#: long before it expires (the feed asks :meth:`DeribitProtocol.due` once a
#: second, ``sources.transport.websocket.TICK_MS``: three chances), and never
#: before half of it has passed. Real tokens live 900 s: refreshed after 720 s.
REFRESH_LEAD_MS = 3000.0
#: An authentication request unanswered for this long is sent again.
AUTH_TIMEOUT_MS = 15_000.0
#: What carries a secret in Deribit frames: the client credentials we send, the
#: tokens the server answers (and the refresh token we send back).
REDACTION = Redaction(("access_token", "refresh_token", "client_id", "client_secret"),
                      needles=(b"_token", b"client_"))


#: Absent raw fields decode to an empty Raw (msgspec cannot make Raw Optional).
_ABSENT = msgspec.Raw()


class _Envelope(Wire):
    method: Optional[str] = None
    id: Optional[SeqNo] = None
    params: msgspec.Raw = _ABSENT
    result: msgspec.Raw = _ABSENT
    error: msgspec.Raw = _ABSENT


class _Notification(Wire):
    channel: str
    data: msgspec.Raw


class _Heartbeat(Wire):
    type: str = ""


class _Book(Wire):
    instrument_name: ProductId
    timestamp: Millis
    change_id: SeqNo
    bids: List[Tuple[Literal["new", "change", "delete"], Price, Size]]
    asks: List[Tuple[Literal["new", "change", "delete"], Price, Size]]
    prev_change_id: Optional[SeqNo] = None


class _TopBook(Wire):
    instrument_name: ProductId
    timestamp: Millis
    change_id: SeqNo
    bids: List[Tuple[Price, Size]]
    asks: List[Tuple[Price, Size]]


class _Trade(Wire):
    trade_id: TradeId
    trade_seq: SeqNo
    instrument_name: ProductId
    timestamp: Millis
    price: Price
    amount: TradeSize
    direction: Literal["buy", "sell"]


class _Ticker(Wire):
    instrument_name: ProductId
    timestamp: Millis
    mark_price: Optional[Price] = None
    index_price: Optional[Price] = None
    last_price: Optional[Price] = None
    current_funding: Optional[Funding] = None


class _Error(Wire):
    code: int
    message: str = ""
    data: msgspec.Raw = _ABSENT


_Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class _AuthResult(msgspec.Struct):
    access_token: _Token
    refresh_token: _Token
    #: Seconds; between 1 s and a year and a bit.
    expires_in: Annotated[int, msgspec.Meta(ge=1, le=40_000_000)]


class Grant(NamedTuple):
    """The tokens a ``public/auth`` answer carries (never shown: see
    :class:`~sources.venues.credentials.Secret`), their lifetime in seconds, and
    the local time they arrived (epoch ms), from which their refresh is timed."""

    access: Secret
    refresh: Secret
    expires_in: float
    ts: float


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_NOTIFICATION = msgspec.json.Decoder(_Notification)
_HEARTBEAT = msgspec.json.Decoder(_Heartbeat)
_BOOK = msgspec.json.Decoder(_Book)
_TOP_BOOK = msgspec.json.Decoder(_TopBook)
_ERROR = msgspec.json.Decoder(_Error)
_TRADES = msgspec.json.Decoder(List[_Trade])
_TICKER = msgspec.json.Decoder(_Ticker)
_AUTH_RESULT = msgspec.json.Decoder(_AuthResult)
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def parse(raw: Raw, ts_recv: float) -> Parsed:
    """Parse one raw Deribit frame."""
    try:
        env = _ENVELOPE.decode(raw)
    except _DECODE_ERRORS as ex:
        return _explain(raw, ex)
    method = env.method
    if method == "subscription" and env.params:
        return _notification(env.params, ts_recv)
    if method == "heartbeat":
        try:
            beat = _HEARTBEAT.decode(env.params) if env.params else _Heartbeat()
        except _DECODE_ERRORS as ex:
            raise FrameError("bad_frame", f"heartbeat: {reason(ex)}") from None
        return Parsed(TEST_REQUEST if beat.type == "test_request" else HEARTBEAT, None, [])
    error = env.error if env.error and bytes(env.error) != b"null" else None
    if method is None and env.id is not None:
        if error is not None:
            try:
                err = _ERROR.decode(error)
            except _DECODE_ERRORS:
                return Parsed(ERROR, None, [], ref=env.id, detail="unreadable error", code="?")
            detail = f"{err.code} {safe_text(err.message)}"
            if err.data:
                detail += f" {safe_text(REDACTION(bytes(err.data)), 160)}"
            return Parsed(ERROR, None, [], ref=env.id, detail=detail, code=str(err.code))
        if env.result and b"access_token" in (result := bytes(env.result)):
            return _grant(env.id, result, ts_recv)
        return Parsed(REPLY, None, [], ref=env.id)
    if method is None and error is not None:
        # An error that names no request of ours (id null) concerns no subscription.
        return Parsed(ERROR, None, [], detail=f"unattributed error "
                      f"{safe_text(bytes(error), 160)}", code="unattributed")
    raise FrameError("unknown_type", f"unknown message (method {safe_text(method, 40)!r})")


def _grant(ref: int, result: bytes, ts_recv: float) -> Parsed:
    """An answer carrying tokens (``public/auth``); one that cannot be read is an
    error for its request, so the authentication it answers is not left waiting."""
    try:
        auth = _AUTH_RESULT.decode(result)
    except _DECODE_ERRORS as ex:
        return Parsed(ERROR, None, [], ref=ref, detail=f"unreadable public/auth answer: "
                      f"{reason(ex)}", code="bad_grant")
    return Parsed(REPLY, None, [Grant(Secret(auth.access_token), Secret(auth.refresh_token),
                                      float(auth.expires_in), ts_recv)], ref=ref)


def _notification(params: msgspec.Raw, ts_recv: float) -> Parsed:
    try:
        note = _NOTIFICATION.decode(params)
    except _DECODE_ERRORS as ex:
        raise FrameError("bad_frame", f"subscription params: {reason(ex)}") from None
    parts = note.channel.split(".")
    if parts[0] == "trades":
        return _trades(note, parts, ts_recv)
    if parts[0] == "ticker":
        return _ticker(note, parts, ts_recv)
    if parts[0] != "book":
        return Parsed(IGNORED, None, [])
    grouped = len(parts) == 5
    depth = _DEPTHS.get(parts[3]) if grouped else None
    if grouped and depth is None:
        raise FrameError("bad_frame", f"{safe_text(note.channel, 80)}: not a book depth "
                         "Deribit serves", None, _products(note.data, parts))
    try:
        if grouped:
            top = _TOP_BOOK.decode(note.data)
            event = BookEvent(REFRESH, VENUE, top.instrument_name, top.timestamp, ts_recv,
                              top.change_id, None, top.bids, top.asks, depth_limit=depth)
        else:
            book = _BOOK.decode(note.data)
            prev = book.prev_change_id
            event = BookEvent(SNAPSHOT if prev is None else UPDATE, VENUE, book.instrument_name,
                              book.timestamp, ts_recv, book.change_id, prev,
                              _levels(book.bids), _levels(book.asks))
    except _DECODE_ERRORS as ex:
        raise FrameError("bad_level", f"{safe_text(note.channel, 80)}: {reason(ex)}", None,
                         _products(note.data, parts)) from None
    return Parsed(BOOK, None, [event])


def _decode(decoder: Any, note: _Notification, parts: List[str], kind: str) -> Any:
    """``note.data`` decoded by ``decoder``, or a FrameError of ``kind`` naming the
    channel and the products the frame was about."""
    try:
        return decoder.decode(note.data)
    except _DECODE_ERRORS as ex:
        raise FrameError(kind, f"{safe_text(note.channel, 80)}: {reason(ex)}", None,
                         _products(note.data, parts)) from None


def _trades(note: _Notification, parts: List[str], ts_recv: float) -> Parsed:
    """``trades.{instrument}.{interval}``: ``direction`` is the taker's side."""
    trades = _decode(_TRADES, note, parts, "bad_trade")
    out = []
    for t in trades:
        base, notional = amounts(*units(t.instrument_name), t.amount, t.price)
        out.append(Trade(VENUE, t.instrument_name, t.timestamp, ts_recv, t.trade_id, t.price,
                         t.amount, t.direction, base, notional, t.trade_seq))
    return Parsed(TRADES, None, out)


def _ticker(note: _Notification, parts: List[str], ts_recv: float) -> Parsed:
    t = _decode(_TICKER, note, parts, "bad_ticker")
    return Parsed(TICKER, None, [Ticker(VENUE, t.instrument_name, t.timestamp, ts_recv,
                                        t.mark_price, t.index_price, t.current_funding,
                                        t.last_price)])


def units(instrument: str) -> Tuple[str, float, bool]:
    """``(size unit, contract size, inverse)`` of an instrument's ``amount``, from its
    name: inverse perpetuals and futures count USD; options and linear (``_USDC``)
    instruments count the base coin (docs: subscriptions/trades, ``amount``)."""
    linear = "_" in instrument.split("-", 1)[0]
    option = instrument.endswith(("-C", "-P"))
    return (BASE, 1.0, False) if linear or option else (QUOTE, 1.0, True)


def _levels(entries: List[Tuple[str, float, float]]) -> List[Level]:
    return [(price, 0.0 if action == "delete" else amount) for action, price, amount in entries]


def _products(data: msgspec.Raw, parts: List[str]) -> List[str]:
    """The instrument a broken book notification was about: from its data, else
    from the channel name."""
    try:
        decoded = loads(bytes(data))
    except FrameError:
        decoded = None
    name = valid_product(decoded.get("instrument_name")) if isinstance(decoded, dict) else None
    name = name or (valid_product(parts[1]) if len(parts) > 2 else None)
    return [name] if name else []


def _explain(raw: Raw, ex: Exception) -> Parsed:
    """The slow path for an envelope the typed decode rejected."""
    msg = loads(raw)
    if not isinstance(msg, dict):
        raise FrameError("unknown_type", f"expected a JSON object, got {type(msg).__name__}")
    if "id" in msg and valid_seq(msg["id"]) is None and msg["id"] is not None:
        raise FrameError("bad_reply", f"request id is a {type(msg['id']).__name__}, "
                                      "not one lobstream sent")
    raise FrameError("unknown_type", f"unreadable message: {reason(ex)}")


def channel(product: str, interval: str = DEFAULT_INTERVAL, depth: int = 0) -> str:
    """The book channel of one instrument."""
    if depth:
        return f"book.{product}.none.{depth}.{interval}"
    return f"book.{product}.{interval}"


class DeribitProtocol(Protocol):
    """JSON-RPC requests with per-connection ids; subscribe and unsubscribe
    requests remember their instruments so an answer or an error can be pinned on
    exactly them. ``public/test`` answers are not tracked at all: a server that
    keeps asking must not grow any table.

    With credentials in its settings the connection authenticates first (see the
    module docstring): until the grant arrives, subscriptions are held back
    (:attr:`_waiting`) and go out with the answer (:attr:`Reply.send`); the
    refresh is sent by :meth:`due`. A refused ``client_credentials`` request
    refuses every product held back; a refused refresh only falls back on the
    client credentials."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.interval = str(settings.get("interval", DEFAULT_INTERVAL))
        self.depth = int(settings.get("depth", 0))
        self.trades = bool(settings.get("trades", True))
        self.tickers = bool(settings.get("tickers", True))
        self._credentials = credentials(settings)
        self._ids = count(1)
        #: id -> (method, instruments) of requests awaiting an answer.
        self._pending: "OrderedDict[int, Tuple[str, List[str]]]" = OrderedDict()
        #: The tokens of the current grant (None: not authenticated yet).
        self._grant: Optional[Grant] = None
        self._refresh_at = float("inf")
        #: The ``public/auth`` request in flight: its id, whether it is a refresh,
        #: and when :meth:`due` first saw it waiting.
        self._auth: Optional[int] = None
        self._auth_refresh = False
        self._auth_seen: Optional[float] = None
        #: The refresh token was refused: the next grant comes from the credentials.
        self._use_credentials = False
        #: Products whose subscription waits for the authentication (ordered set).
        self._waiting: Dict[str, None] = {}

    @property
    def authenticated(self) -> bool:
        """Whether subscriptions may go out: no credentials, or a grant in hand."""
        return self._credentials is None or self._grant is not None

    def _request(self, method: str, params: Dict[str, Any],
                 products: Optional[Sequence[str]] = None) -> Message:
        ident = next(self._ids)
        if products is not None:
            if len(self._pending) >= self.MAX_PENDING:
                self._pending.popitem(last=False)
                self.forgotten += 1
            self._pending[ident] = (method, list(products))
        return {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}

    def _authenticate(self) -> Message:
        """A ``public/auth`` request: the refresh of the current grant, or the
        client credentials when there is none to refresh."""
        creds = self._credentials
        assert creds is not None
        refresh = self._grant is not None and not self._use_credentials
        if refresh:
            assert self._grant is not None
            params = {"grant_type": "refresh_token",
                      "refresh_token": self._grant.refresh.reveal()}
        else:
            params = {"grant_type": "client_credentials", "client_id": creds.reveal("client_id"),
                      "client_secret": creds.reveal("client_secret")}
        message = self._request("public/auth", params)
        self._auth, self._auth_refresh, self._auth_seen = message["id"], refresh, None
        return message

    def _names(self, product: str, books_only: bool) -> List[str]:
        names = [channel(product, self.interval, self.depth)]
        if not books_only:
            # Trades follow the book's interval (raw needs the same token); the
            # ticker stays at 100 ms: its raw stream adds nothing lobstream uses.
            ticker = "100ms" if self.interval == RAW else self.interval
            if self.trades:
                names.append(f"trades.{product}.{self.interval}")
            if self.tickers:
                names.append(f"ticker.{product}.{ticker}")
        return names

    def _channels(self, method: str, products: Sequence[str],
                  books_only: bool = False) -> List[Message]:
        per = len(self._names("X", books_only))
        size = max(1, CHANNELS_PER_REQUEST // per)
        out = []
        for i in range(0, len(products), size):
            chunk = list(products[i:i + size])
            out.append(self._request(method, {"channels": [
                n for p in chunk for n in self._names(p, books_only)]}, chunk))
        return out

    def open(self, products: Sequence[str]) -> List[Message]:
        heartbeat = self._request("public/set_heartbeat", {"interval": HEARTBEAT_INTERVAL}, [])
        if self._credentials is None:
            return [heartbeat] + self.subscribe(products)
        self._waiting = dict.fromkeys(products)
        return [heartbeat, self._authenticate()]

    def subscribe(self, products: Sequence[str]) -> List[Message]:
        if not self.authenticated:
            self._waiting.update(dict.fromkeys(products))
            return []
        return self._channels("public/subscribe", products)

    def unsubscribe(self, products: Sequence[str]) -> List[Message]:
        if not self.authenticated:
            for product in products:
                self._waiting.pop(product, None)
            return []
        return self._channels("public/unsubscribe", products)

    def resubscribe(self, product: str) -> List[Message]:
        if not self.authenticated:
            return []  # its subscription goes out with the grant
        return (self._channels("public/unsubscribe", [product], books_only=True)
                + self._channels("public/subscribe", [product], books_only=True))

    def answer_test_request(self) -> List[Message]:
        return [self._request("public/test", {})]

    def reply(self, ref: Any, events: Sequence[Any] = ()) -> Reply:
        if ref is not None and ref == self._auth:
            grant = next((e for e in events if isinstance(e, Grant)), None)
            if grant is None:
                return Reply([], False)  # no tokens: due() asks again after AUTH_TIMEOUT_MS
            self._auth, self._grant, self._use_credentials = None, grant, False
            life = grant.expires_in * 1000.0
            self._refresh_at = grant.ts + max(life / 2, life - max(life / 5, REFRESH_LEAD_MS))
            waiting, self._waiting = list(self._waiting), {}
            return Reply([], False, self.subscribe(waiting) if waiting else [])
        method, products = self._pending.pop(ref, ("", []))
        # Deribit confirms a subscription before it sends the snapshot.
        return Reply(products, method == "public/subscribe")

    def refused(self, ref: Any, detail: str) -> Optional[List[str]]:
        if ref is not None and ref == self._auth:
            self._auth = None
            if self._auth_refresh:
                # The grant still holds until it expires: get a new one from the
                # credentials at the next due() instead.
                self._use_credentials, self._refresh_at = True, float("-inf")
                return None
            # No more attempts on this connection: a grant still held expires, the
            # server ends the connection, and the next one starts afresh.
            self._refresh_at = float("inf")
            waiting, self._waiting = list(self._waiting), {}
            return waiting or None
        method, products = self._pending.pop(ref, ("", []))
        return products if method == "public/subscribe" and products else None

    def due(self, now: float) -> List[Message]:
        if self._credentials is None:
            return []
        if self._auth is not None:
            if self._auth_seen is None:
                self._auth_seen = now
            elif now - self._auth_seen >= AUTH_TIMEOUT_MS:
                return [self._authenticate()]
            return []
        if self._grant is not None and now >= self._refresh_at:
            return [self._authenticate()]
        return []

    def reset(self) -> None:
        self._pending.clear()
        self._grant, self._auth, self._use_credentials = None, None, False
        self._refresh_at = float("inf")
        self._waiting = {}


_CUR = r"[A-Z0-9]{1,20}"
_DAY_MONTH_YEAR = (r"(?:[1-9]|[12][0-9]|3[01])(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
                   r"[0-9]{2}")
_STRIKE = r"[0-9]{1,12}(?:d[0-9]{1,12})?"
#: Futures BTC-25MAR23 (day without a leading zero), perpetuals BTC-PERPETUAL,
#: options BTC-27JUN25-60000-C, linear XRP_USDC-PERPETUAL / XRP_USDC-30JUN23-0d625-C
#: (``d`` is the strike's decimal point), spot pairs BTC_USDC.
_NAME = re.compile(rf"{_CUR}(?:_{_CUR})?-(?:PERPETUAL|{_DAY_MONTH_YEAR}(?:-{_STRIKE}-[CP])?)"
                   rf"|{_CUR}_{_CUR}")


VENUE_SPEC = Venue(
    name=VENUE,
    title="Deribit",
    default_url=DEFAULT_URL,
    rest_url="https://www.deribit.com",
    parse=parse,
    protocol=DeribitProtocol,
    # 32 connections per IP (json-rpc overview); public/subscribe is credit-limited
    # to about 3.3 requests/s sustained: lobstream sends at most 2 control messages/s.
    limits=Limits(max_connections=32, connects_per_second=2.0, products_per_connection=100,
                  max_products_per_connection=500, messages_per_second=2.0,
                  channels_per_request=CHANNELS_PER_REQUEST),
    default_products=("BTC-PERPETUAL", "ETH-PERPETUAL"),
    check_product=check_name(_NAME, "futures BTC-25MAR23, perpetuals BTC-PERPETUAL, options "
                             "BTC-27JUN25-60000-C, linear XRP_USDC-PERPETUAL or "
                             "XRP_USDC-30JUN23-0d625-C, spot BTC_USDC"),
    book_chain=chain_exact,
    settings=(
        Setting("interval", DEFAULT_INTERVAL, "book interval (raw: tick by tick, needs "
                "credentials)", INTERVALS + (RAW,), needs_credentials=(RAW,)),
        Setting("depth", 0, "0 = full chained book; 1, 10 or 20 = the grouped top-N channel "
                "book.{instrument}.none.{depth}.{interval}", GROUPED_DEPTHS),
        Setting("trades", True, "also follow trades.{instrument}.{interval}"),
        Setting("tickers", True, "also follow ticker.{instrument}.{interval} (mark, index, "
                "funding in bars)"),
    ),
    hints=(
        ("13004", "Deribit does not know this API key: check LOBSTREAM_DERIBIT_CLIENT_ID and "
                  "LOBSTREAM_DERIBIT_CLIENT_SECRET (or the file in deribit.credentials_file) "
                  "against the key's page on deribit.com, then restart"),
        ("13009", "Deribit no longer accepts the connection's token; lobstream authenticates "
                  "again with the client credentials"),
        ("unreadable public/auth answer", "check that deribit.url is Deribit's websocket API"),
        ("13778", "raw books need an authenticated connection: set LOBSTREAM_DERIBIT_CLIENT_ID "
                  "and LOBSTREAM_DERIBIT_CLIENT_SECRET, or use the 100ms interval "
                  "(deribit.interval = \"100ms\")"),
        ("raw_subscriptions_not_available", "raw books need authentication; use 100ms"),
        ("10028", "Deribit's request credit ran out: lower the subscribe rate"),
        ("Invalid params", "check the instrument names in the configuration"),
    ),
    answers_test_requests=True,
    credentials=(CredentialField("client_id", "the API key's Client Id"),
                 CredentialField("client_secret", "the API key's Client Secret")),
    redact=REDACTION,
)


# -- historical candles (REST chart data) ------------------------------------------
# ``GET /api/v2/public/get_tradingview_chart_data?instrument_name=&start_timestamp=
# &end_timestamp=&resolution=`` (ms, inclusive) answers column arrays: ``ticks``
# (candle starts), ``open``/``high``/``low``/``close``, ``volume`` (base currency)
# and ``cost`` (quote currency), with ``status`` "ok" or "no_data". A window
# without trades comes back as a filling candle (the last close, zero volume).
# ⚠ No page size is documented: lobstream asks for 1,000 candles at a time.
# Public requests are credit-limited (about 20/s sustained): lobstream sends 5/s.
REST_URL = "https://www.deribit.com"
_RESOLUTIONS = {60_000: "1", 180_000: "3", 300_000: "5", 600_000: "10", 900_000: "15",
                1_800_000: "30", 3_600_000: "60", 7_200_000: "120", 10_800_000: "180",
                21_600_000: "360", 43_200_000: "720", 86_400_000: "1D"}
_ChartTime = Annotated[int, msgspec.Meta(ge=0, le=4_102_444_800_000)]


class _Chart(msgspec.Struct):
    status: Literal["ok", "no_data"]
    ticks: List[_ChartTime] = []
    open: List[Price] = []
    high: List[Price] = []
    low: List[Price] = []
    close: List[Price] = []
    volume: List[Size] = []
    cost: List[Size] = []


class _ChartReply(msgspec.Struct):
    result: _Chart


_CHART = msgspec.json.Decoder(_ChartReply)


def _chart_request(product: str, start_ms: int, last_ms: int, resolution: str,
                   limit: int) -> Tuple[str, Dict[str, str]]:
    return "/api/v2/public/get_tradingview_chart_data", {
        "instrument_name": product, "start_timestamp": str(start_ms),
        "end_timestamp": str(last_ms), "resolution": resolution}


def parse_chart(body: bytes, product: str) -> List[Candle]:
    try:
        chart = _CHART.decode(body).result
    except (msgspec.DecodeError, msgspec.ValidationError) as ex:
        raise ValueError(f"deribit chart data for {product}: {ex}") from None
    columns = (chart.ticks, chart.open, chart.high, chart.low, chart.close, chart.volume,
               chart.cost)
    if len({len(c) for c in columns}) != 1:
        raise ValueError(f"deribit chart data for {product}: columns of different lengths "
                         f"{[len(c) for c in columns]}")
    return [check_candle(Candle(*row)) for row in zip(*columns)]


CANDLES = CandleApi(venue=VENUE, rest_url=REST_URL, max_candles=1000, intervals=_RESOLUTIONS,
                    request=_chart_request, parse=parse_chart, rate=(5, 1.0))

"""Coinbase Exchange, simulated: websocket and REST on ``/coinbase-exchange``.

What a client can rely on, as on the real feed (``ws-feed.exchange.coinbase.com``):
flat messages with a ``type``; ``subscribe``/``unsubscribe`` name several channels
at once, as strings (using the root ``product_ids``) or as
``{"name", "product_ids"}`` objects (root products apply to them too); every
accepted (un)subscribe is answered with a ``subscriptions`` message listing all of
the connection's subscriptions; no subscription within the deadline closes the
connection. Book channels (``level2_batch``, its old name ``level2_50``,
and ``level2`` with credentials) start with a ``snapshot`` and go on with the
recorded ``l2update`` messages, unchanged and unbatched. ``matches`` and
``ticker`` are the recorded messages, in recorded order with the books; the
recording's ``last_match`` comes first, and a resubscription of ``matches``
starts with the last match sent as a ``last_match`` (of ``ticker``, with the
last ticker), as a new subscription does on the real feed. ``heartbeat`` sends
one message per subscribed product per second.

``level2`` (like ``level3`` and ``full``) needs credentials since 2023-08-01;
without ``signature``/``key``/``passphrase``/``timestamp`` the request gets the
error the real server sends, and the other channels of the same request are
still subscribed, as live probes observed for ``heartbeat``. A request that
carries any of them is checked for real against the API keys the server was
started with (``api_keys["coinbase_exchange"]``): a known ``key``, its
``passphrase``, a ``timestamp`` (seconds, a string) within 30 s of the server's
clock (moved by ``clock_skew``), and ``signature`` = base64 HMAC-SHA256, keyed
with the base64-decoded secret, of ``timestamp + "GET" + "/users/self/verify"``.
A failed check refuses the whole request with ``{"type": "error", "message":
"Sorry, you could not be authenticated: Bad Request", "reason": ...}`` (reason
``Invalid API Key``, ``Invalid Passphrase``, ``request timestamp expired``,
``invalid signature``: the wording client projects' issue reports show). An
unknown product, or one a fault plan refuses, fails the whole request. Channels
the simulator does not serve (``ticker_batch``, ``status``...) are refused as
invalid.

Exchange times: ``l2update``, ``match`` and ``ticker`` ``time`` as recorded,
moved by the exchange clock; a snapshot has no time on this feed; a heartbeat's
``time`` is the connection's exchange clock. Over the client message-rate limit
(off by default; the feed documents 100 messages/s per IP) a message gets an
``error`` and is ignored.

REST: ``GET /coinbase-exchange/products`` and ``/products/{product_id}`` from the
bundled reply (it has no times); an unknown product gets ``404
{"message": "NotFound"}`` as on the real API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import calendar
import hashlib
import hmac
import math
import time
from bisect import bisect_right
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Hashable, List, Optional, Sequence, Set, Tuple, Union

import orjson

from sources.simulator.exchanges.base import Indexed, SimulatedExchange
from sources.simulator.outbox import BOOK, DATA, HEARTBEAT, REPLY, OutFrame
from sources.simulator.recording import RecordedFrame
from sources.simulator.rest import RestReply, RestRequest, Route, json_reply
from sources.simulator.session import Session
from sources.simulator.stream import Adapt, ProductStream, SentBook
from sources.simulator.universe import Record, ReferenceList, read_reference

VENUE = "coinbase_exchange"

BOOK_CHANNELS = ("level2", "level2_batch", "level2_50")
HEARTBEAT_CHANNEL = "heartbeat"
#: Channels that need credentials on the real feed.
AUTH_CHANNELS = frozenset(("level2", "level3", "full"))
AUTH_FIELDS = ("signature", "key", "passphrase", "timestamp")
#: The real server's answer to an unauthenticated ``level2``/``level3``/``full``.
AUTH_REASON = ("level2, level3, and full channels now require authentication. "
               "https://docs.cloud.coinbase.com/exchange/docs/websocket-auth")
MATCHES, TICKER = "matches", "ticker"
#: Message type -> the channel (and recording channel) carrying it. The
#: ``sequence``/``trade_id`` of matches and tickers are also what the simulated
#: heartbeats report.
CHANNEL_OF = {"snapshot": "book", "l2update": "book", "match": MATCHES,
              "last_match": MATCHES, "ticker": TICKER}
#: The ``message`` of a refused signature (its ``reason`` says why).
AUTH_FAILED = "Sorry, you could not be authenticated: Bad Request"
#: How far a signature's timestamp may be from the server's clock, in seconds.
SIGNATURE_WINDOW = 30.0

PRODUCTS_FILE = "coinbase_exchange_products.json.gz"
#: When the bundled products reply was recorded (recordings/PROVENANCE.md).
PRODUCTS_RECORDED_MS = calendar.timegm((2021, 4, 17, 16, 43, 36)) * 1000.0


class ExchangeBookStream(ProductStream):
    """A book channel for one product; tracks the book to answer resubscribes and
    the recorded time reached, which dates the heartbeats' trade marks."""

    resyncs = True

    def __init__(self, product: str, frames: Sequence[RecordedFrame], adapt: Adapt) -> None:
        super().__init__(product, frames, adapt)
        self._book = SentBook()
        self.recorded_ts = float("-inf")

    def take(self) -> OutFrame:
        ts = self.next_ts()
        if ts is not None:
            self.recorded_ts = ts
        return super().take()

    def apply(self, msg: Dict[str, Any]) -> None:
        book = self._book
        if msg.get("type") == "snapshot":
            book.clear()
            book.bids.update((price, size) for price, size in msg["bids"])
            book.asks.update((price, size) for price, size in msg["asks"])
            return
        for side, price, size in msg.get("changes") or ():
            levels = book.bids if side == "buy" else book.asks
            if float(size) == 0.0:
                levels.pop(price, None)
            else:
                levels[price] = size

    def snapshot(self) -> Dict[str, Any]:
        """As the real server's first message: the whole book, best prices first,
        and no time or sequence of its own."""
        bids, asks = self._book.bids, self._book.asks
        return {"type": "snapshot", "product_id": self.product,
                "bids": [[p, bids[p]] for p in sorted(bids, key=Decimal, reverse=True)],
                "asks": [[p, asks[p]] for p in sorted(asks, key=Decimal)]}

    def render(self, msg: Dict[str, Any]) -> OutFrame:
        return OutFrame(BOOK, msg, product=self.product)


class ExchangeDataStream(ProductStream):
    """``matches`` or ``ticker`` for one product: the recorded messages; a
    resubscription repeats the last one sent (a match as ``last_match``)."""

    resyncs = True

    def __init__(self, channel: str, product: str, frames: Sequence[RecordedFrame],
                 adapt: Adapt) -> None:
        super().__init__(product, frames, adapt)
        self._channel = channel
        self._last: Dict[str, Any] = {}

    def apply(self, msg: Dict[str, Any]) -> None:
        self._last = msg

    def snapshot(self) -> Dict[str, Any]:
        return {**self._last, "type": "last_match"} if self._channel == MATCHES else self._last

    def render(self, msg: Dict[str, Any]) -> OutFrame:
        return OutFrame(DATA, msg, product=self.product)


class RequestError(Exception):
    """A request the real server would refuse; the message is its ``reason``."""


class CoinbaseExchangeSession(Session):
    """One ``/coinbase-exchange`` connection."""

    venue = VENUE
    subscribe_deadline = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        #: channel -> products, in the order they were subscribed.
        self._subs: Dict[str, List[str]] = {}
        self._books: Dict[str, ExchangeBookStream] = {}
        self._data: Dict[Tuple[str, str], ExchangeDataStream] = {}
        self._heartbeats: Optional["asyncio.Task[None]"] = None

    async def _error(self, message: str, reason: str = "") -> None:
        msg = {"type": "error", "message": message}
        if reason:
            msg["reason"] = reason
        await self.send(REPLY, msg)

    async def handle(self, message: Union[str, bytes]) -> None:
        if not self.allowed():
            await self._error("rate limit exceeded", "too many messages; message ignored")
            return
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self._error("Malformed JSON")
            return
        kind = request.get("type") if isinstance(request, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self._error(f"unknown message type {kind!r}",
                              "expected subscribe or unsubscribe")
            return
        signed = kind == "subscribe" and any(f in request for f in AUTH_FIELDS)
        if signed:
            refused = self._verify(request)
            if refused is not None:
                self.ctx.stats.auth(VENUE, "auth_failures")
                await self._error(AUTH_FAILED, refused)
                return
            self.ctx.stats.auth(VENUE, "authentications")
        try:
            wanted = self._channels(request)
            if kind == "unsubscribe":
                self._unsubscribe(wanted)
            elif not await self._subscribe(wanted, signed):
                return
        except RequestError as exc:
            await self._error(f"Failed to {kind}", str(exc))
            return
        self._sync_streams()
        # Sent before the replay task runs again, so it precedes the new data.
        await self.send(REPLY, {"type": "subscriptions",
                                "channels": [{"name": name, "product_ids": list(products)}
                                             for name, products in self._subs.items()]})

    def _verify(self, request: Dict[str, Any]) -> Optional[str]:
        """Why a signed subscribe is refused, or None if its signature holds."""
        key, passphrase, stamp, signature = (request.get(f) for f in
                                             ("key", "passphrase", "timestamp", "signature"))
        keys = {k[0]: k[1:] for k in self.ctx.config.api_keys.get(VENUE, ())}
        if not isinstance(key, str) or key not in keys:
            return "Invalid API Key"
        secret, expected = keys[key]
        if not isinstance(passphrase, str) or not hmac.compare_digest(
                expected.encode(), passphrase.encode()):
            return "Invalid Passphrase"
        try:
            when = float(stamp) if isinstance(stamp, str) else math.nan
        except ValueError:
            when = math.nan
        if not math.isfinite(when):
            return "invalid timestamp"
        if abs(time.time() + self.ctx.config.clock_skew - when) > SIGNATURE_WINDOW:
            return "request timestamp expired"
        message = (stamp + "GET/users/self/verify").encode()
        good = base64.b64encode(hmac.new(base64.b64decode(secret), message,
                                         hashlib.sha256).digest()).decode()
        if not isinstance(signature, str) or not hmac.compare_digest(good.encode(),
                                                                     signature.encode()):
            return "invalid signature"
        self.ctx.credentials_seen.append(signature)
        return None

    @staticmethod
    def _channels(request: Dict[str, Any]) -> Dict[str, List[str]]:
        """channel -> products named by a request (root products apply to all)."""
        root = request.get("product_ids") or []
        channels = request.get("channels")
        if not isinstance(channels, list) or not channels:
            raise RequestError("channels must be a non-empty list")
        wanted: Dict[str, List[str]] = {}
        for entry in channels:
            if isinstance(entry, str):
                name, own = entry, []
            elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
                name, own = entry["name"], entry.get("product_ids") or []
            else:
                raise RequestError(f"{entry!r} is not a valid channel")
            products = [*root, *own] if isinstance(own, list) and isinstance(root, list) else None
            if products is None or not all(isinstance(p, str) for p in products):
                raise RequestError("product_ids must be a list of strings")
            wanted.setdefault(name, []).extend(products)
        return wanted

    async def _subscribe(self, wanted: Dict[str, List[str]], authenticated: bool) -> bool:
        """Subscribe what may be; False if nothing was (an error went out instead)."""
        self.count_subscribe(sum(map(len, wanted.values())))
        for name, products in wanted.items():
            if name not in BOOK_CHANNELS and name not in (HEARTBEAT_CHANNEL, MATCHES, TICKER) \
                    and (authenticated or name not in AUTH_CHANNELS):
                raise RequestError(f"{name} is not a valid channel")
            if not products:
                raise RequestError(f"{name} needs product_ids")
            unknown = self.unknown(products)
            if unknown:
                raise RequestError(f"{unknown[0]} is not a valid product")
        for product in dict.fromkeys(p for products in wanted.values() for p in products):
            refused = self.subscribe_error(product)
            if refused is not None:  # a fault plan's refusal, worded as it says
                await self._error(refused.message)
                return False
        if not authenticated and AUTH_CHANNELS & set(wanted):
            await self._error("Failed to subscribe", AUTH_REASON)
            wanted = {n: p for n, p in wanted.items() if n not in AUTH_CHANNELS}
            if not wanted:
                return False
        for name, products in wanted.items():
            subscribed = self._subs.setdefault(name, [])
            subscribed.extend(p for p in dict.fromkeys(products) if p not in subscribed)
        if HEARTBEAT_CHANNEL in wanted and self._heartbeats is None:
            self._heartbeats = self.spawn(self._send_heartbeats())
        self.subscribed()
        return True

    def _unsubscribe(self, wanted: Dict[str, List[str]]) -> None:
        """A channel named without products goes entirely."""
        for name, products in wanted.items():
            subscribed = self._subs.get(name, [])
            for product in products or list(subscribed):
                if product in subscribed:
                    subscribed.remove(product)
            if not subscribed:
                self._subs.pop(name, None)

    def _sync_streams(self) -> None:
        """One book stream per product, active while any book channel has it
        (``level2_batch`` and its aliases are the same data), and one stream per
        data channel and product, active while subscribed."""
        books: Set[str] = {p for name in BOOK_CHANNELS for p in self._subs.get(name, ())}
        data = {(name, p) for name in (MATCHES, TICKER) for p in self._subs.get(name, ())}
        for product in books:
            self._run(self._books, product, "book", product)
        for channel, product in data:
            self._run(self._data, (channel, product), channel, product)
        for streams, wanted in ((self._books, books), (self._data, data)):
            for key, stream in streams.items():
                if key not in wanted and stream.active:
                    stream.pause()
        self.replay.wake()

    def _run(self, streams: Dict[Any, Any], key: Any, channel: str, product: str) -> None:
        """Start the stream ``streams[key]``, or resume it if it was paused."""
        stream = streams.get(key)
        if stream is None:
            source = self.universe.source(product, self.now())
            assert source is not None  # checked by _subscribe
            frames = self.ctx.recording.frames(VENUE, channel, source)
            adapt = self._adapt(channel, product, source)
            stream = streams[key] = (ExchangeBookStream(product, frames, adapt) if channel == "book"
                                     else ExchangeDataStream(channel, product, frames, adapt))
            self.replay.add(stream)
        elif not stream.active:
            stream.resume()

    def _adapt(self, channel: str, product: str, source: str) -> Adapt:
        clock = self.clock

        def adapt(msg: Dict[str, Any]) -> Dict[str, Any]:
            if product != source:
                msg = EXCHANGE.rename(channel, msg, product)
            if clock.shifted and "time" in msg:
                msg = {**msg, "time": clock.rfc3339(msg["time"])}
            return msg
        return adapt

    def _mark(self, source: str, reached: float) -> Dict[str, Any]:
        """The latest recorded match or ticker of ``source`` at or before
        ``reached`` (recorded time), else its first one."""
        latest: Optional[RecordedFrame] = None
        first: Optional[RecordedFrame] = None
        for channel in (MATCHES, TICKER):
            frames = self.ctx.recording.frames(VENUE, channel, source)
            i = bisect_right(frames, reached, key=lambda frame: frame.ts)
            if i and (latest is None or frames[i - 1].ts > latest.ts):
                latest = frames[i - 1]
            if frames and (first is None or frames[0].ts < first.ts):
                first = frames[0]
        mark = latest or first
        return mark.payload if mark is not None else {}

    def _heartbeat(self, product: str) -> Dict[str, Any]:
        """``sequence`` and ``last_trade_id`` are the product's, as recorded (ticker and
        match messages) up to where its book replay has got: the L2 recording has
        no sequence of its own."""
        source = self.universe.source(product, self.now()) or product
        stream = self._books.get(product)
        mark = self._mark(source, stream.recorded_ts if stream is not None else float("-inf"))
        return {"type": "heartbeat", "sequence": mark.get("sequence", 0),
                "last_trade_id": mark.get("trade_id", 0), "product_id": product,
                "time": self.clock.text(self.recorded_now(), 6)}

    async def _send_heartbeats(self) -> None:
        """Once a second on the server's clock, one per product subscribed then."""
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            tick = max(tick + 1, int(loop.time() - self.ctx.started) + 1)
            await asyncio.sleep(self.ctx.started + tick - loop.time())
            for product in list(self._subs.get(HEARTBEAT_CHANNEL, ())):
                await self.send(HEARTBEAT, self._heartbeat(product))


# --- REST ------------------------------------------------------------------------

NOT_FOUND = {"message": "NotFound"}


def list_products(request: RestRequest) -> RestReply:
    """``GET /products``."""
    return json_reply(request.universe.records(request.now))


def get_product(request: RestRequest) -> RestReply:
    """``GET /products/{product_id}``."""
    instrument = request.universe.get(request.params["product_id"])
    if instrument is None or instrument.record is None or not instrument.listed(request.now):
        return json_reply(NOT_FOUND, 404)
    return json_reply(instrument.record)


class CoinbaseExchange(SimulatedExchange):
    venue = VENUE
    session = CoinbaseExchangeSession
    ws_paths = ("/coinbase-exchange",)
    rest_prefix = "/coinbase-exchange"
    routes = (Route("/products", list_products), Route("/products/{product_id}", get_product))
    book_channel = "book"
    key_fields = ("key", "secret", "passphrase")

    def check_api_key(self, key: Tuple[str, ...]) -> Optional[str]:
        problem = super().check_api_key(key)
        if problem is None:
            try:
                base64.b64decode(key[1], validate=True)
            except (binascii.Error, ValueError):
                return "its secret is not base64"
        return problem

    def index(self, msg: Dict[str, Any]) -> Optional[List[Indexed]]:
        kind = msg.get("type")
        if not isinstance(kind, str) or "channel" in msg or "jsonrpc" in msg:
            return None
        product = msg.get("product_id")
        if not isinstance(product, str):
            return []
        channel = CHANNEL_OF.get(kind)
        return [(channel, product, msg)] if channel is not None else []

    def rename(self, channel: str, payload: Dict[str, Any], name: str) -> Dict[str, Any]:
        return {**payload, "product_id": name}

    def size_slots(self, msg: Dict[str, Any]) -> List[Tuple[Any, Any]]:
        """Snapshot ``bids``/``asks`` ``[price, size]``, l2update ``changes``
        ``[side, price, size]``."""
        slots: List[Tuple[Any, Any]] = [(level, 1) for key in ("bids", "asks")
                                        for level in msg.get(key) or ()]
        return slots + [(change, 2) for change in msg.get("changes") or ()]

    def unknown_message(self, name: str, product: Optional[str]) -> Dict[str, Any]:
        return {"type": name, "product_id": product}

    def reference_lists(self, directory: Path) -> List[ReferenceList]:
        path = directory / PRODUCTS_FILE
        if not path.exists():
            return []
        products = read_reference(path)
        return [ReferenceList("", PRODUCTS_RECORDED_MS,
                              [p for p in products if isinstance(p, dict)]
                              if isinstance(products, list) else [])]

    def record_name(self, record: Record) -> str:
        return str(record.get("id"))

    def family(self, name: str) -> Tuple[Hashable, ...]:
        return (name.rpartition("-")[2],)  # the quote currency


EXCHANGE = CoinbaseExchange()

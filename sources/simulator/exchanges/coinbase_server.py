"""Coinbase Advanced Trade, simulated: websocket on ``/coinbase``, REST under ``/coinbase``.

What a client can rely on, as on the real feed: one channel per (un)subscribe
message, many products per message; every reply is a ``subscriptions`` message
listing everything the connection is subscribed to; every message carries
``sequence_num`` from one per-connection counter (replies, heartbeats and data
of all products alike); no subscription within the deadline closes the
connection. ``level2`` data arrives as ``l2_data``, a snapshot first, with
recorded events passed through (times moved by the exchange clock).
``market_trades`` and ``ticker`` are the recorded events too, in recorded order
with the books; a resubscription of either starts with a ``snapshot`` event, as
on the real feed: the last 100 trades sent (newest first, so every one of them
is a trade the client has had already and must not count again), or the last
ticker.

Exchange times: ``event_time`` and trade ``time`` as recorded, moved; the
envelope ``timestamp`` of a recorded message is the recorded one, moved (so a
websocket run sees the times a replay of the capture does); a snapshot
generated on resubscribe is stamped with its book's last ``event_time`` (the
time the book is as of, never later than the next update); other envelopes
(replies, generated snapshots of trades and tickers) and the heartbeats'
``current_time`` carry the connection's exchange clock.

Where the real feed is vaguer, the simulator picks the stricter reading: unknown
products or channels get an ``error`` message and subscribe nothing, and the
``subscriptions`` reply goes out before the first data of a new subscription (the
real server was recorded sending the snapshot first; clients must accept either).
Over the client message-rate limit (off by default; 8/s unauthenticated per IP
on the real feed) a message is answered with an ``error`` and ignored.

REST: ``GET /coinbase/api/v3/brokerage/market/products`` (``product_type``,
``product_ids``, ``limit``, ``offset``) and ``.../products/{product_id}``, from
the bundled reply with ``new_at`` moved; bad values get the gRPC-style error body
the real API sends (``{"error": "INVALID_ARGUMENT", "error_details", "message"}``).
"""

from __future__ import annotations

import asyncio
import calendar
from collections import deque
from datetime import datetime, timezone
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any, Deque, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple, Union

import orjson

from sources.simulator.clock import ExchangeClock, with_nanoseconds
from sources.simulator.exchanges.base import Indexed, SimulatedExchange
from sources.simulator.outbox import BOOK, DATA, HEARTBEAT, REPLY, OutFrame
from sources.simulator.recording import RecordedFrame
from sources.simulator.rest import RestReply, RestRequest, Route, json_reply
from sources.simulator.session import Session
from sources.simulator.stream import Adapt, ProductStream, SentBook
from sources.simulator.universe import Record, ReferenceList, read_reference

VENUE = "coinbase"
HEARTBEATS = "heartbeats"
#: Message channel names, keyed by the name a client subscribes with. Book data
#: arrives as ``l2_data`` for a ``level2`` subscription; the others keep their name.
CHANNELS: Dict[str, str] = {
    "level2": "l2_data",
    "ticker": "ticker",
    "market_trades": "market_trades",
}
#: For the non-book channels, the event key holding per-product items.
_ITEM_KEYS = {"ticker": "tickers", "market_trades": "trades"}
#: Items a resubscribe snapshot repeats: the recorded market_trades snapshots
#: hold the last 100 trades; a ticker snapshot is the one current ticker.
_SNAPSHOT_ITEMS = {"ticker": 1, "market_trades": 100}

PRODUCTS_FILE = "coinbase_products.json.gz"
#: When the bundled products reply was recorded (recordings/PROVENANCE.md; the
#: body carries no time of its own).
PRODUCTS_RECORDED_MS = calendar.timegm((2026, 8, 9, 21, 5, 48)) * 1000.0
PRODUCT_TYPES = ("SPOT", "FUTURE", "UNKNOWN_PRODUCT_TYPE")
#: gRPC status names the REST API reports, by HTTP status.
_GRPC_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
               500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def go_time(t_ns: int, uptime: float) -> str:
    """A heartbeat's ``current_time``: Go's ``time.Time`` string, monotonic reading
    (seconds since the server started) included, as the real feed prints it."""
    secs, ns = divmod(t_ns, 1_000_000_000)
    wall = datetime.fromtimestamp(secs, timezone.utc)
    return f"{wall:%Y-%m-%d %H:%M:%S}.{ns:09d} +0000 UTC m=+{uptime:.9f}"


def envelope(channel: str, events: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A channel message; ``timestamp`` and ``sequence_num`` are stamped at send time."""
    return {"channel": channel, "client_id": "", "timestamp": "", "sequence_num": 0,
            "events": events}


def _items(channel: str, event: Dict[str, Any]) -> List[Any]:
    items = event.get(_ITEM_KEYS[channel])
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def retime(channel: str, event: Dict[str, Any], clock: ExchangeClock) -> Dict[str, Any]:
    """A copy of an event with its exchange times moved (``event_time``, trade ``time``)."""
    if channel == "l2_data":
        return {**event, "updates": [{**u, "event_time": clock.rfc3339(u.get("event_time"))}
                                     for u in event.get("updates") or ()]}
    if channel == "market_trades":
        return {**event, "trades": [{**t, "time": clock.rfc3339(t.get("time"))}
                                    for t in _items(channel, event)]}
    return event


class CoinbaseBookStream(ProductStream):
    """``level2`` for one product; tracks the book to answer resubscribes."""

    resyncs = True

    def __init__(self, product: str, frames: Sequence[RecordedFrame], adapt: Adapt) -> None:
        super().__init__(product, frames, adapt)
        self._book = SentBook()
        # A generated snapshot is as of the last change sent; the real feed stamps
        # every level of a snapshot with one event_time too.
        self._event_time = "1970-01-01T00:00:00Z"

    def apply(self, event: Dict[str, Any]) -> None:
        if event.get("type") == "snapshot":
            self._book.clear()
        for update in event.get("updates") or ():
            side = self._book.bids if update.get("side") == "bid" else self._book.asks
            price, quantity = update["price_level"], update["new_quantity"]
            if float(quantity) == 0.0:
                side.pop(price, None)
            else:
                side[price] = quantity
            self._event_time = update.get("event_time", self._event_time)

    def snapshot(self) -> Dict[str, Any]:
        def levels(side_name: str, side: Dict[str, str], best_first: bool) -> List[Dict[str, str]]:
            prices = sorted(side, key=Decimal, reverse=best_first)
            return [{"side": side_name, "event_time": self._event_time,
                     "price_level": p, "new_quantity": side[p]} for p in prices]

        updates = (levels("bid", self._book.bids, True)
                   + levels("offer", self._book.asks, False))
        return {"type": "snapshot", "product_id": self.product, "updates": updates}

    def render(self, event: Dict[str, Any]) -> OutFrame:
        return OutFrame(BOOK, envelope("l2_data", [event]), product=self.product)


class CoinbaseDataStream(ProductStream):
    """``ticker`` or ``market_trades`` for one product, replayed as recorded; keeps
    the latest items sent, newest first, for a resubscribe's snapshot."""

    resyncs = True

    def __init__(self, channel: str, product: str, frames: Sequence[RecordedFrame],
                 adapt: Adapt) -> None:
        super().__init__(product, frames, adapt)
        self._channel = channel
        self._recent: Deque[Any] = deque(maxlen=_SNAPSHOT_ITEMS[channel])

    def apply(self, event: Dict[str, Any]) -> None:
        if event.get("type") == "snapshot":
            self._recent.clear()
        # Items come newest first within an event.
        self._recent.extendleft(reversed(_items(self._channel, event)))

    def snapshot(self) -> Dict[str, Any]:
        return {"type": "snapshot", _ITEM_KEYS[self._channel]: list(self._recent)}

    def render(self, event: Dict[str, Any]) -> OutFrame:
        return OutFrame(DATA, envelope(self._channel, [event]), product=self.product)


class CoinbaseSession(Session):
    """One ``/coinbase`` connection."""

    venue = VENUE
    subscribe_deadline = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._seq = 0
        self._subs: Dict[str, List[str]] = {}
        self._streams: Dict[Tuple[str, str], ProductStream] = {}
        self._heartbeats: Optional["asyncio.Task[None]"] = None

    def stamp(self, frame: OutFrame) -> None:
        msg = frame.msg
        if "sequence_num" not in msg:
            return  # error messages carry no envelope on the real feed either
        msg["timestamp"] = self._timestamp(frame)
        msg["sequence_num"] = self._seq
        if frame.kind == BOOK:
            frame.seq = self._seq
        self._seq += 1

    def _timestamp(self, frame: OutFrame) -> str:
        """A recorded message: its recorded time; a generated book snapshot: the
        time the book is as of; anything else: the connection's exchange clock
        (see the module docstring)."""
        msg = frame.msg
        if frame.recorded_time is not None:
            return self.clock.rfc3339(frame.recorded_time)
        if msg.get("channel") == "l2_data":
            events = msg.get("events") or [{}]
            updates = events[0].get("updates") if isinstance(events[0], dict) else None
            if updates and isinstance(updates[0], dict):
                own = with_nanoseconds(updates[0].get("event_time"))
                if own is not None:
                    return own
        return self.clock.text(self.recorded_now(), 9)

    async def _error(self, message: str) -> None:
        await self.send(REPLY, {"type": "error", "message": message})

    async def handle(self, message: Union[str, bytes]) -> None:
        if not self.allowed():
            await self._error("rate limit exceeded: too many messages, message ignored")
            return
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self._error("malformed JSON message")
            return
        kind = request.get("type") if isinstance(request, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self._error(f"unknown message type {kind!r}: expected subscribe or unsubscribe")
            return
        channel = request.get("channel")
        if not isinstance(channel, str) or (channel != HEARTBEATS and channel not in CHANNELS):
            await self._error(f"Failed to {kind}: channel {channel!r} is not available")
            return
        products = request.get("product_ids") or []
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            await self._error("product_ids must be a list of strings")
            return
        if kind == "subscribe":
            await self._subscribe(channel, products)
        else:
            self._unsubscribe(channel, products)
            await self._send_subscriptions()

    async def _subscribe(self, channel: str, products: List[str]) -> None:
        self.count_subscribe(max(len(products), 1))
        if channel == HEARTBEATS:
            self._subs[HEARTBEATS] = [HEARTBEATS]
            if self._heartbeats is None:
                self._heartbeats = self.spawn(self._send_heartbeats())
        else:
            unknown = self.unknown(products)
            if not products or unknown:
                await self._error(f"Failed to subscribe: unknown product_ids {unknown}"
                                  if unknown else f"Failed to subscribe: {channel} needs product_ids")
                return
            refused = [e for e in map(self.subscribe_error, dict.fromkeys(products))
                       if e is not None]
            if refused:
                await self._error(refused[0].message)
                return
            subscribed = self._subs.setdefault(channel, [])
            for product in dict.fromkeys(products):
                if product not in subscribed:
                    subscribed.append(product)
                    self._start(channel, product)
        self.subscribed()
        # Sent before the replay task runs again, so it precedes the new data.
        await self._send_subscriptions()

    def _adapt(self, channel: str, product: str, source: str) -> Adapt:
        clock = self.clock

        def adapt(event: Dict[str, Any]) -> Dict[str, Any]:
            if product != source:
                event = EXCHANGE.rename(channel, event, product)
            return retime(channel, event, clock) if clock.shifted else event
        return adapt

    def _start(self, channel: str, product: str) -> None:
        stream = self._streams.get((channel, product))
        if stream is None:
            source = self.universe.source(product, self.now())
            assert source is not None  # checked by _subscribe
            message_channel = CHANNELS[channel]
            frames = self.ctx.recording.frames(VENUE, message_channel, source)
            adapt = self._adapt(message_channel, product, source)
            stream = (CoinbaseBookStream(product, frames, adapt) if channel == "level2"
                      else CoinbaseDataStream(message_channel, product, frames, adapt))
            self._streams[(channel, product)] = stream
            self.replay.add(stream)
        else:
            stream.resume()
        self.replay.wake()

    def _unsubscribe(self, channel: str, products: List[str]) -> None:
        """Without product_ids the whole channel goes, as on the real feed."""
        if channel == HEARTBEATS:
            self._subs.pop(HEARTBEATS, None)
            if self._heartbeats is not None:
                self._heartbeats.cancel()
                self._heartbeats = None
            return
        subscribed = self._subs.get(channel, [])
        for product in products or list(subscribed):
            if product in subscribed:
                subscribed.remove(product)
                self._streams[(channel, product)].pause()
        if not subscribed:
            self._subs.pop(channel, None)
        self.replay.wake()

    async def _send_subscriptions(self) -> None:
        current = {channel: list(products) for channel, products in sorted(self._subs.items())}
        await self.send(REPLY, envelope("subscriptions", [{"subscriptions": current}]))

    async def _send_heartbeats(self) -> None:
        """Once a second, on the server's clock: ``heartbeat_counter`` is the
        seconds since the server started, so it is shared by all connections and a
        missed heartbeat shows as a skipped number (an integer, as recorded)."""
        loop = asyncio.get_running_loop()
        counter = 0
        while True:
            counter = max(counter + 1, int(loop.time() - self.ctx.started) + 1)
            await asyncio.sleep(self.ctx.started + counter - loop.time())
            t_ns = round((self.recorded_now() + self.clock.offset_ms) * 1_000_000)
            event = {"current_time": go_time(t_ns, loop.time() - self.ctx.started),
                     "heartbeat_counter": counter}
            await self.send(HEARTBEAT, envelope(HEARTBEATS, [event]))


# --- REST ------------------------------------------------------------------------

def _invalid(detail: str, status: int = 400) -> RestReply:
    return json_reply({"error": _GRPC_NAMES.get(status, "UNKNOWN"), "error_details": detail,
                       "message": detail}, status)


def _count(request: RestRequest, name: str) -> Union[int, RestReply, None]:
    text = request.one(name)
    if text is None or text == "":
        return None
    if not text.isdigit():
        return _invalid(f"invalid value for {name}: {text!r} is not a non-negative integer")
    return int(text)


def list_products(request: RestRequest) -> RestReply:
    """``GET /api/v3/brokerage/market/products``."""
    records = request.universe.records(request.now)
    product_type = request.one("product_type")
    if product_type:
        if product_type not in PRODUCT_TYPES:
            return _invalid(f"invalid value for product_type: {product_type!r}; "
                            f"valid: {', '.join(PRODUCT_TYPES)}")
        records = [r for r in records if r.get("product_type") == product_type]
    wanted = request.query.get("product_ids")
    if wanted:
        records = [r for r in records if r.get("product_id") in set(wanted)]
    offset, limit = _count(request, "offset"), _count(request, "limit")
    for bad in (offset, limit):
        if isinstance(bad, RestReply):
            return bad
    records = records[offset or 0:]
    if limit:
        records = records[:limit]
    return json_reply({"products": records, "num_products": len(records),
                       "pagination": {"prev_cursor": "", "next_cursor": "",
                                      "has_next": False, "has_prev": False}})


def get_product(request: RestRequest) -> RestReply:
    """``GET /api/v3/brokerage/market/products/{product_id}``."""
    instrument = request.universe.get(request.params["product_id"])
    if instrument is None or instrument.record is None or not instrument.listed(request.now):
        return _invalid("ProductID is invalid")
    return json_reply(instrument.record)


class CoinbaseAdvanced(SimulatedExchange):
    venue = VENUE
    session = CoinbaseSession
    ws_paths = ("/coinbase",)
    rest_prefix = "/coinbase"
    routes = (Route("/api/v3/brokerage/market/products", list_products),
              Route("/api/v3/brokerage/market/products/{product_id}", get_product))
    book_channel = "l2_data"

    def index(self, msg: Dict[str, Any]) -> Optional[List[Indexed]]:
        events = msg.get("events")
        if "channel" not in msg or not isinstance(events, list):
            return None
        channel = msg["channel"]
        if not isinstance(channel, str) or channel not in CHANNELS.values():
            return []
        return [(channel, product, payload) for event in events if isinstance(event, dict)
                for product, payload in _split_event(channel, event)]

    def rename(self, channel: str, payload: Dict[str, Any], name: str) -> Dict[str, Any]:
        if channel == "l2_data":
            return {**payload, "product_id": name}
        key = _ITEM_KEYS[channel]
        return {**payload, key: [{**item, "product_id": name} for item in _items(channel, payload)]}

    def envelope_time(self, msg: Dict[str, Any]) -> Any:
        return msg.get("timestamp")

    def size_slots(self, msg: Dict[str, Any]) -> List[Tuple[Any, Any]]:
        return [(update, "new_quantity") for event in msg.get("events") or ()
                for update in event.get("updates") or ()]

    def unknown_message(self, name: str, product: Optional[str]) -> Dict[str, Any]:
        return envelope(name, [{"product_id": product}])

    def rest_error(self, status: int) -> RestReply:
        return _invalid(HTTPStatus(status).phrase, status)

    def reference_lists(self, directory: Path) -> List[ReferenceList]:
        path = directory / PRODUCTS_FILE
        if not path.exists():
            return []
        products = read_reference(path).get("products") or []
        return [ReferenceList("", PRODUCTS_RECORDED_MS, [p for p in products
                                                         if isinstance(p, dict)])]

    def record_name(self, record: Record) -> str:
        return str(record.get("product_id"))

    def shift_record(self, record: Record, clock: ExchangeClock) -> Record:
        return {**record, "new_at": clock.rfc3339(record.get("new_at"))} if "new_at" in record \
            else record

    def family(self, name: str) -> Tuple[Hashable, ...]:
        return (name.rpartition("-")[2],)  # the quote currency


def _split_event(channel: str, event: Dict[str, Any]) -> Iterable[Tuple[str, Dict[str, Any]]]:
    """Yield ``(product, event)`` pairs: l2_data events name one product already;
    ticker and trade events may mix products and are split into one event each."""
    if channel == "l2_data":
        if isinstance(event.get("product_id"), str):
            yield event["product_id"], event
        return
    key = _ITEM_KEYS[channel]
    groups: Dict[str, List[Any]] = {}
    for item in _items(channel, event):
        product = item.get("product_id")
        if isinstance(product, str):
            groups.setdefault(product, []).append(item)
    for product, items in groups.items():
        yield product, {**event, key: items}


EXCHANGE = CoinbaseAdvanced()

"""Coinbase Advanced Trade, as served on ``/coinbase``.

What a client can rely on, as on the real feed: one channel per (un)subscribe
message; every reply is a ``subscriptions`` message listing everything the
connection is subscribed to; every message carries ``sequence_num`` from one
per-connection counter (replies, heartbeats and data alike); no subscription within
the deadline closes the connection. ``level2`` data arrives as ``l2_data``, a
snapshot first, with recorded events passed through unchanged.

Where the real feed is vaguer, the simulator picks the stricter reading: unknown
products or channels get an ``error`` message and subscribe nothing, and the
``subscriptions`` reply goes out before the first data of a new subscription (the
real server was recorded sending the snapshot first; clients must accept either).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import orjson

from sources.simulator.market import COINBASE_CHANNELS, RecordedFrame
from sources.simulator.outbox import BOOK, DATA, HEARTBEAT, REPLY, OutFrame
from sources.simulator.session import Session
from sources.simulator.stream import ProductStream, SentBook

HEARTBEATS = "heartbeats"


def rfc3339_ns(t_ns: int) -> str:
    """``2023-02-09T20:32:50.714964855Z``: the feed's timestamps carry nanoseconds,
    which ``datetime`` cannot hold."""
    secs, ns = divmod(t_ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(secs, timezone.utc):%Y-%m-%dT%H:%M:%S}.{ns:09d}Z"


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


class CoinbaseBookStream(ProductStream):
    """``level2`` for one product; tracks the book to answer resubscribes."""

    resyncs = True

    def __init__(self, product: str, frames: Sequence[RecordedFrame]) -> None:
        super().__init__(product, frames)
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
    """``ticker`` or ``market_trades`` for one product, replayed as recorded."""

    def __init__(self, channel: str, product: str, frames: Sequence[RecordedFrame]) -> None:
        super().__init__(product, frames)
        self._channel = channel

    def render(self, event: Dict[str, Any]) -> OutFrame:
        return OutFrame(DATA, envelope(self._channel, [event]), product=self.product)


class CoinbaseSession(Session):
    """One ``/coinbase`` connection."""

    venue = "coinbase"
    subscribe_deadline = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._seq = 0
        self._subs: Dict[str, List[str]] = {}
        self._streams: Dict[Tuple[str, str], ProductStream] = {}
        self._heartbeats: Optional["asyncio.Task[None]"] = None
        self._products = self.ctx.recording.coinbase_products()

    def stamp(self, frame: OutFrame) -> None:
        msg = frame.msg
        if "sequence_num" not in msg:
            return  # error messages carry no envelope on the real feed either
        msg["timestamp"] = rfc3339_ns(time.time_ns())
        msg["sequence_num"] = self._seq
        if frame.kind == BOOK:
            frame.seq = self._seq
        self._seq += 1

    async def _error(self, message: str) -> None:
        await self.send(REPLY, {"type": "error", "message": message})

    async def handle(self, message: Union[str, bytes]) -> None:
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
        if channel != HEARTBEATS and channel not in COINBASE_CHANNELS:
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
        if channel == HEARTBEATS:
            self._subs[HEARTBEATS] = [HEARTBEATS]
            if self._heartbeats is None:
                self._heartbeats = self.spawn(self._send_heartbeats())
        else:
            unknown = [p for p in products if p not in self._products]
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

    def _start(self, channel: str, product: str) -> None:
        stream = self._streams.get((channel, product))
        if stream is None:
            frames = self.ctx.recording.coinbase.get(COINBASE_CHANNELS[channel], {}).get(product, [])
            stream = (CoinbaseBookStream(product, frames) if channel == "level2"
                      else CoinbaseDataStream(COINBASE_CHANNELS[channel], product, frames))
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
            uptime = loop.time() - self.ctx.started
            event = {"current_time": go_time(time.time_ns(), uptime),
                     "heartbeat_counter": counter}
            await self.send(HEARTBEAT, envelope(HEARTBEATS, [event]))

"""Deribit JSON-RPC 2.0, as served on ``/deribit`` and ``/ws/api/v2``.

Requests are answered with their ``id`` echoed and Deribit's timing fields
(``usIn``/``usOut``/``usDiff``, ``testnet: false``); notifications carry no
``id``. Book channels are ``book.{instrument}.{interval}``: the recordings were made
on ``raw``, but unauthenticated clients may only use ``100ms``/``agg2``, so the
recorded changes are served on whichever interval was subscribed, under the
client's own channel name. ``raw`` needs a prior ``public/auth``, which accepts any
credentials: the point is to make clients that forget to authenticate fail the
way they would on the real server (error 13778 for the whole request).

Heartbeats follow the real server: after ``public/set_heartbeat`` a
``test_request`` goes out every interval, and a client that has not called
``public/test`` by the next one is disconnected.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import orjson

from sources.simulator.market import RecordedFrame
from sources.simulator.outbox import BOOK, HEARTBEAT, REPLY, OutFrame
from sources.simulator.session import Session
from sources.simulator.stream import ProductStream, SentBook

#: Reported by ``public/test``; marks the answer as the simulator's.
VERSION = "lobstream-simulator-1"
INTERVALS = ("raw", "100ms", "agg2")


class RpcError(Exception):
    """A JSON-RPC error answer: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.error: Dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            self.error["data"] = data


def invalid_params(reason: str, param: str) -> RpcError:
    return RpcError(-32602, "Invalid params", {"reason": reason, "param": param})


def now_us() -> int:
    return time.time_ns() // 1000


class DeribitBookStream(ProductStream):
    """``book.{instrument}.{interval}`` for one instrument; tracks the book and the
    last ``change_id`` sent so a resubscribe snapshot continues the chain."""

    resyncs = True

    def __init__(self, product: str, frames: Sequence[RecordedFrame], channel: str) -> None:
        super().__init__(product, frames)
        self.channel = channel
        self._book = SentBook()
        self._change_id: Any = None
        self._timestamp: Any = None

    def apply(self, data: Dict[str, Any]) -> None:
        if "prev_change_id" not in data:  # a snapshot, whether or not it says so
            self._book.clear()
        for key, side in (("bids", self._book.bids), ("asks", self._book.asks)):
            for action, price, amount in data.get(key) or ():
                if action == "delete" or amount == 0:
                    side.pop(price, None)
                else:
                    side[price] = amount
        self._change_id = data.get("change_id")
        self._timestamp = data.get("timestamp")

    def snapshot(self) -> Dict[str, Any]:
        """As the real server's first notification: ``type`` snapshot, no
        ``prev_change_id``, every level as ``new``; ``change_id`` is the last one
        sent, so the next recorded change (prev_change_id == it) chains on."""
        bids = [["new", p, self._book.bids[p]] for p in sorted(self._book.bids, reverse=True)]
        asks = [["new", p, self._book.asks[p]] for p in sorted(self._book.asks)]
        return {"type": "snapshot", "timestamp": self._timestamp,
                "instrument_name": self.product, "change_id": self._change_id,
                "bids": bids, "asks": asks}

    def render(self, data: Dict[str, Any]) -> OutFrame:
        msg = {"jsonrpc": "2.0", "method": "subscription",
               "params": {"channel": self.channel, "data": data}}
        return OutFrame(BOOK, msg, product=self.product, seq=data.get("change_id"))


class DeribitSession(Session):
    """One Deribit connection."""

    venue = "deribit"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._authorized = False
        self._test_pending = False
        self._heartbeats: Optional["asyncio.Task[None]"] = None
        self._books: Dict[str, DeribitBookStream] = {}
        self._methods: Dict[str, Callable[[Dict[str, Any]], Any]] = {
            "public/subscribe": self._subscribe,
            "public/unsubscribe": self._unsubscribe,
            "public/set_heartbeat": self._set_heartbeat,
            "public/test": self._test,
            "public/auth": self._auth,
        }

    def stamp(self, frame: OutFrame) -> None:
        msg = frame.msg
        if "usIn" in msg:
            msg["usOut"] = now_us()
            msg["usDiff"] = msg["usOut"] - msg["usIn"]

    async def handle(self, message: Union[str, bytes]) -> None:
        us_in = now_us()
        request_id: Any = None
        try:
            try:
                request = orjson.loads(message)
            except orjson.JSONDecodeError:
                raise RpcError(-32700, "Parse error") from None
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                raise RpcError(-32600, "Invalid Request")
            request_id = request.get("id")
            method = self._methods.get(request["method"])
            if method is None:
                raise RpcError(-32601, "Method not found")
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise RpcError(-32602, "Invalid params")
            # Handlers change state synchronously; the reply's send is queued
            # before any frame they cause, so the answer comes first.
            answer: Tuple[str, Any] = ("result", method(params))
        except RpcError as exc:
            answer = ("error", exc.error)
        reply = {"jsonrpc": "2.0", "id": request_id, answer[0]: answer[1],
                 "usIn": us_in, "usOut": 0, "usDiff": 0, "testnet": False}
        await self.send(REPLY, reply)

    def _channels(self, params: Dict[str, Any]) -> List[str]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise invalid_params("channels must be a list of strings", "channels")
        return list(dict.fromkeys(channels))

    def _parse(self, channel: str) -> str:
        """Check one channel name and return its instrument."""
        parts = channel.split(".")
        if len(parts) != 3 or parts[0] != "book" or parts[2] not in INTERVALS:
            raise invalid_params(f"channel {channel!r} is not served here: "
                                 "use book.INSTRUMENT.(100ms|agg2|raw)", "channels")
        if parts[2] == "raw" and not self._authorized:
            raise RpcError(13778, "raw_subscriptions_not_available_for_unauthorized")
        if parts[1] not in self.ctx.recording.deribit:
            raise invalid_params(f"unknown instrument {parts[1]!r} in {channel!r}", "channels")
        refused = self.subscribe_error(parts[1])
        if refused is not None:
            raise RpcError(refused.code, refused.message)
        return parts[1]

    def _subscribe(self, params: Dict[str, Any]) -> List[str]:
        channels = self._channels(params)
        wanted = [(channel, self._parse(channel)) for channel in channels]
        for channel, instrument in wanted:
            stream = self._books.get(instrument)
            if stream is not None and stream.active and stream.channel != channel:
                raise invalid_params(f"{instrument} is already subscribed as {stream.channel!r}; "
                                     "the simulator serves one book channel per instrument",
                                     "channels")
        for channel, instrument in wanted:
            stream = self._books.get(instrument)
            if stream is None:
                stream = DeribitBookStream(instrument, self.ctx.recording.deribit[instrument],
                                           channel)
                self._books[instrument] = stream
                self.replay.add(stream)
            elif not stream.active:
                stream.channel = channel
                stream.resume()
        self.replay.wake()
        return channels

    def _unsubscribe(self, params: Dict[str, Any]) -> List[str]:
        removed = []
        for channel in self._channels(params):
            parts = channel.split(".")
            stream = self._books.get(parts[1]) if len(parts) == 3 else None
            if stream is not None and stream.active and stream.channel == channel:
                stream.pause()
                removed.append(channel)
        self.replay.wake()
        return removed

    def _set_heartbeat(self, params: Dict[str, Any]) -> str:
        interval = params.get("interval")
        minimum = self.ctx.config.min_heartbeat
        if not isinstance(interval, (int, float)) or interval < minimum:
            raise invalid_params(f"interval must be a number >= {minimum:g}", "interval")
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        self._test_pending = False
        self._heartbeats = self.spawn(self._send_heartbeats(float(interval)))
        return "ok"

    def _test(self, params: Dict[str, Any]) -> Dict[str, str]:
        self._test_pending = False
        return {"version": VERSION}

    def _auth(self, params: Dict[str, Any]) -> Dict[str, Any]:
        self._authorized = True
        return {"access_token": "simulator", "refresh_token": "simulator",
                "expires_in": 31536000, "scope": "connection", "token_type": "bearer"}

    async def _send_heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._test_pending:
                await self.ws.close(1008, "test_request not answered with public/test")
                return
            self._test_pending = True
            await self.send(HEARTBEAT, {"jsonrpc": "2.0", "method": "heartbeat",
                                        "params": {"type": "test_request"}})

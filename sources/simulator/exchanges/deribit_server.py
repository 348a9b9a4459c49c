"""Deribit JSON-RPC 2.0, simulated: websocket on ``/deribit`` and ``/ws/api/v2``, REST
under ``/deribit/api/v2`` and Deribit's own ``/api/v2``.

Requests are answered with their ``id`` echoed and Deribit's timing fields
(``usIn``/``usOut``/``usDiff``, ``testnet: false``); notifications carry no
``id``. One ``public/subscribe`` may name up to 500 channels (more is an error),
of these kinds, mixed freely:

* ``book.{instrument}.{interval}``: the recordings were made on ``raw``, but
  unauthenticated clients may only use ``100ms``/``agg2``, so the recorded changes
  are served on whichever interval was subscribed, under the client's own channel
  name. ``raw`` needs the connection to hold a valid token (below), else the
  whole request fails with error 13778, as on the real server. One plain book
  channel per instrument and connection; a resubscribe snapshot continues the
  change chain.
* ``book.{instrument}.{group}.{depth}.{interval}`` (group ``none``, depth 1, 10 or
  20, interval ``100ms`` or ``agg2``): after each recorded change, the complete
  top-``depth`` book as ``[price, amount]`` pairs with ``instrument_name``,
  ``change_id`` and ``timestamp``, and no ``prev_change_id`` or ``type``.
* ``trades.{instrument}.{interval}`` and ``ticker.{instrument}.{interval}``
  (``100ms``, ``agg2``; ``raw`` after ``public/auth``): the recorded
  notifications, in recorded order with the books, under the client's channel
  name. An instrument with nothing recorded (the bundled book recording has
  tickers but no trades) is subscribed and simply sends nothing. One channel per
  kind and instrument.

Exchange times: ``timestamp`` (of every trade too) as recorded, moved by the
exchange clock (a resubscribe snapshot carries the last one sent). Subscribe requests over the
configured rate (off by default) are answered with ``10028 too_many_requests``
(the real server may also end the session).

Heartbeats follow the real server: after ``public/set_heartbeat`` a
``test_request`` goes out every interval, and a client that has not called
``public/test`` by the next one is disconnected.

Authentication checks the API keys the server was started with
(``api_keys["deribit"]``, ``--api-key deribit:ID:SECRET``). ``public/auth`` with
``client_credentials`` and a known id and secret, or with ``refresh_token`` and
the connection's current refresh token, answers fresh random tokens with
``expires_in`` = ``token_lifetime`` (900 s on the real server) and
``token_type: bearer``; anything else gets ``13004 invalid_credentials`` (wrong
id or secret) or ``13009 unauthorized`` (a refresh token that is not the
connection's current one: each is good once), and missing parameters get
``-32602``. Tokens are per connection (scope ``connection``). A token that
expires unrefreshed ends the connection's authorization: the server closes it
(1008, "access token expired"). The real server's behaviour at expiry is not
documented; closing is the simulator's strict reading, so a client that
forgets to refresh cannot go unnoticed.

Instruments: ``public/get_instruments`` (over the websocket, or
``GET .../api/v2/public/get_instruments?currency=BTC&kind=option&expired=false``)
serves the bundled lists, one per currency, with ``creation_timestamp`` and
``expiration_timestamp`` moved by each list's own offset. Recorded instruments a
list lacks (the bundled book recording is from 2021-04, the lists from 2021-07)
are added to their currency's list, built from the name (expiry at 08:00 UTC on
the named day, strike, call/put; settlement period from the date) with the
other fields (tick size, contract size...) of a listed instrument of the same
currency and kind. ``expired=true`` lists the instruments the schedule has
delisted. Bad values get ``-32602 Invalid params`` with HTTP 400, as the real one.
"""

from __future__ import annotations

import asyncio
import calendar
import heapq
import hmac
import re
import secrets
import time
from http import HTTPStatus
from pathlib import Path
from typing import (Any, Callable, Dict, Hashable, List, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import orjson

from sources.simulator.clock import ExchangeClock
from sources.simulator.exchanges.base import Indexed, SimulatedExchange
from sources.simulator.limits import Limits
from sources.simulator.outbox import BOOK, DATA, HEARTBEAT, REPLY, OutFrame
from sources.simulator.recording import RecordedFrame
from sources.simulator.rest import RestReply, RestRequest, Route, json_reply
from sources.simulator.session import Session
from sources.simulator.stream import Adapt, ProductStream, SentBook
from sources.simulator.universe import Record, ReferenceList, Universe, read_reference

VENUE = "deribit"
#: Reported by ``public/test``; marks the answer as the simulator's.
VERSION = "lobstream-simulator-1"
INTERVALS = ("raw", "100ms", "agg2")
#: Channel kinds besides ``book`` (same intervals).
DATA_KINDS = ("trades", "ticker")
GROUPED_INTERVALS = ("100ms", "agg2")
GROUPS = ("none",)
DEPTHS = ("1", "10", "20")
#: Channels one ``public/subscribe`` may name (market-data best practices page).
MAX_CHANNELS = 500

#: Bundled ``public/get_instruments`` replies, one per currency; each body's
#: ``usIn`` says when it was recorded.
INSTRUMENT_FILES = {currency: f"deribit_instruments_{currency}.json.gz"
                    for currency in ("BTC", "ETH", "SOL", "USDC")}
#: Valid ``currency`` values (documented ones, plus any bundled list's).
CURRENCIES = frozenset(("BTC", "ETH", "USDC", "USDT", "EURR", "any", *INSTRUMENT_FILES))
KINDS = ("future", "option", "spot", "future_combo", "option_combo", "combo", "any")
_EXPIRED = {None: False, False: False, "false": False, True: True, "true": True}
#: ``expiration_timestamp`` of perpetuals (3000-01-01): not a time to move.
PERPETUAL_EXPIRY = 32503708800000

_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG",
                                       "SEP", "OCT", "NOV", "DEC"), start=1)}
#: ``BTC-PERPETUAL``, ``BTC-25MAR23``, ``BTC-27JUN25-60000-C``, ``XRP_USDC-30JUN23-0d625-C``.
_NAME = re.compile(r"(?P<base>[A-Z0-9]+)(?:_(?P<quote>[A-Z]+))?-(?:(?P<perpetual>PERPETUAL)|"
                   r"(?P<day>\d{1,2})(?P<month>[A-Z]{3})(?P<year>\d\d)"
                   r"(?:-(?P<strike>\d+(?:d\d+)?)-(?P<right>[CP]))?)")


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


def rpc_reply(us_in: int, request_id: Any, answer: Tuple[str, Any]) -> Dict[str, Any]:
    """A reply; ``usOut``/``usDiff`` are stamped when it is sent."""
    reply = {"jsonrpc": "2.0", "id": request_id, answer[0]: answer[1],
             "usIn": us_in, "usOut": 0, "usDiff": 0, "testnet": False}
    if request_id is None:
        del reply["id"]  # HTTP GETs carry no id, and their replies none either
    return reply


class DeribitBookStream(ProductStream):
    """``book.{instrument}.{interval}`` for one instrument; tracks the book and the
    last ``change_id`` sent so a resubscribe snapshot continues the chain."""

    resyncs = True

    def __init__(self, product: str, frames: Sequence[RecordedFrame], channel: str,
                 adapt: Adapt) -> None:
        super().__init__(product, frames, adapt)
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


class DeribitGroupedStream(DeribitBookStream):
    """``book.{instrument}.none.{depth}.{interval}``: the recorded changes applied to
    a book, each sent as the complete top of that book; nothing to resync."""

    resyncs = False

    def __init__(self, product: str, frames: Sequence[RecordedFrame], channel: str,
                 depth: int, adapt: Adapt) -> None:
        super().__init__(product, frames, channel, adapt)
        self._depth = depth

    def render(self, data: Dict[str, Any]) -> OutFrame:
        bids, asks = self._book.bids, self._book.asks
        top = {"timestamp": data.get("timestamp"), "instrument_name": self.product,
               "change_id": data.get("change_id"),
               "bids": [[p, bids[p]] for p in heapq.nlargest(self._depth, bids)],
               "asks": [[p, asks[p]] for p in heapq.nsmallest(self._depth, asks)]}
        return super().render(top)


class DeribitDataStream(ProductStream):
    """``trades.{instrument}.{interval}`` or ``ticker...``: the recorded
    notifications under the subscribed channel name."""

    def __init__(self, product: str, frames: Sequence[RecordedFrame], channel: str,
                 adapt: Adapt) -> None:
        super().__init__(product, frames, adapt)
        self.channel = channel

    def render(self, data: Dict[str, Any]) -> OutFrame:
        payload = data["trades"] if self.channel.startswith("trades.") else data
        return OutFrame(DATA, {"jsonrpc": "2.0", "method": "subscription",
                               "params": {"channel": self.channel, "data": payload}},
                        product=self.product)


class Channel(NamedTuple):
    """A parsed channel name: its ``kind`` (``book``, ``trades``, ``ticker``) and,
    for books, ``depth`` (0 for the plain change channel)."""

    name: str
    kind: str
    instrument: str
    depth: int


class DeribitSession(Session):
    """One Deribit connection."""

    venue = VENUE

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        #: The connection's current (access, refresh) tokens; None: not authorized.
        self._tokens: Optional[Tuple[str, str]] = None
        self._expiry: Optional["asyncio.Task[None]"] = None
        self._test_pending = False
        self._heartbeats: Optional["asyncio.Task[None]"] = None
        self._books: Dict[str, DeribitBookStream] = {}  # plain channels, by instrument
        self._grouped: Dict[str, DeribitGroupedStream] = {}  # by channel name
        self._data: Dict[Tuple[str, str], DeribitDataStream] = {}  # by (kind, instrument)
        self._methods: Dict[str, Callable[[Dict[str, Any]], Any]] = {
            "public/subscribe": self._subscribe,
            "public/unsubscribe": self._unsubscribe,
            "public/get_instruments": lambda params: instruments(
                self.universe, self.now(), params.get("currency"), params.get("kind"),
                params.get("expired")),
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
        await self.send(REPLY, rpc_reply(us_in, request_id, answer))

    def _channels(self, params: Dict[str, Any]) -> List[str]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise invalid_params("channels must be a list of strings", "channels")
        return list(dict.fromkeys(channels))

    def _parse(self, channel: str) -> Channel:
        """Check one channel name (and that it may be subscribed now)."""
        parts = channel.split(".")
        plain = len(parts) == 3 and parts[2] in INTERVALS
        grouped = (parts[0] == "book" and len(parts) == 5 and parts[2] in GROUPS
                   and parts[3] in DEPTHS and parts[4] in GROUPED_INTERVALS)
        if parts[0] not in ("book", *DATA_KINDS) or not (plain or grouped):
            raise invalid_params(
                f"channel {channel!r} is not served here: use (book|trades|ticker).INSTRUMENT."
                "(100ms|agg2|raw) or book.INSTRUMENT.none.(1|10|20).(100ms|agg2)", "channels")
        if plain and parts[2] == "raw" and self._tokens is None:
            raise RpcError(13778, "raw_subscriptions_not_available_for_unauthorized")
        unknown = self.unknown([parts[1]])
        if unknown:
            raise invalid_params(f"unknown instrument {unknown[0]!r} in {channel!r}", "channels")
        refused = self.subscribe_error(parts[1])
        if refused is not None:
            raise RpcError(refused.code, refused.message)
        return Channel(channel, parts[0], parts[1], int(parts[3]) if grouped else 0)

    def _subscribe(self, params: Dict[str, Any]) -> List[str]:
        channels = self._channels(params)
        self.count_subscribe(len(channels))
        if not self.allowed():
            raise RpcError(10028, "too_many_requests")
        if len(channels) > MAX_CHANNELS:
            raise invalid_params(f"{len(channels)} channels: at most {MAX_CHANNELS} per request",
                                 "channels")
        wanted = [self._parse(channel) for channel in channels]
        for channel in wanted:
            if channel.depth:
                continue  # grouped channels: one stream per name
            streams, key = self._slot(channel)
            stream = streams.get(key)
            if stream is not None and stream.active and stream.channel != channel.name:
                raise invalid_params(f"{channel.instrument} is already subscribed as "
                                     f"{stream.channel!r}; the simulator serves one {channel.kind} "
                                     "channel per instrument", "channels")
        for channel in wanted:
            self._start(channel)
        self.replay.wake()
        return channels

    def _slot(self, channel: Channel) -> Tuple[Dict[Any, Any], Any]:
        """Where the stream of ``channel`` is kept: its table and key."""
        if channel.kind != "book":
            return self._data, (channel.kind, channel.instrument)
        if channel.depth:
            return self._grouped, channel.name
        return self._books, channel.instrument

    def _start(self, channel: Channel) -> None:
        streams, key = self._slot(channel)
        stream = streams.get(key)
        if stream is None:
            source = self.universe.source(channel.instrument, self.now())
            assert source is not None  # checked by _parse
            frames = self.ctx.recording.frames(VENUE, channel.kind, source)
            adapt = self._adapt(channel.kind, channel.instrument, source)
            if channel.kind != "book":
                stream = DeribitDataStream(channel.instrument, frames, channel.name, adapt)
            elif channel.depth:
                stream = DeribitGroupedStream(channel.instrument, frames, channel.name,
                                              channel.depth, adapt)
            else:
                stream = DeribitBookStream(channel.instrument, frames, channel.name, adapt)
            streams[key] = stream
            self.replay.add(stream)
        elif not stream.active:
            stream.channel = channel.name
            stream.resume()

    def _adapt(self, kind: str, instrument: str, source: str) -> Adapt:
        clock = self.clock

        def moved(item: Dict[str, Any]) -> Dict[str, Any]:
            return {**item, "timestamp": clock.ms(item["timestamp"])} if "timestamp" in item \
                else item

        def adapt(data: Dict[str, Any]) -> Dict[str, Any]:
            if instrument != source:
                data = EXCHANGE.rename(kind, data, instrument)
            if not clock.shifted:
                return data
            if kind == "trades":
                return {"trades": [moved(t) for t in data["trades"]]}
            return moved(data)
        return adapt

    def _unsubscribe(self, params: Dict[str, Any]) -> List[str]:
        removed = []
        for name in self._channels(params):
            parts = name.split(".")
            if len(parts) < 3:
                continue
            depth = int(parts[3]) if len(parts) == 5 and parts[3].isdigit() else 0
            streams, key = self._slot(Channel(name, parts[0], parts[1], depth))
            stream = streams.get(key)
            if stream is not None and stream.active and stream.channel == name:
                stream.pause()
                removed.append(name)
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
        grant = params.get("grant_type")
        stats = self.ctx.stats
        if grant == "client_credentials":
            client_id, secret = params.get("client_id"), params.get("client_secret")
            if not isinstance(client_id, str) or not isinstance(secret, str):
                raise invalid_params("client_id and client_secret are required", "client_id")
            known = dict(self.ctx.config.api_keys.get(VENUE, ()))
            expected = known.get(client_id)
            if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
                stats.auth(VENUE, "auth_failures")
                raise RpcError(13004, "invalid_credentials")
            stats.auth(VENUE, "authentications")
        elif grant == "refresh_token":
            token = params.get("refresh_token")
            if not isinstance(token, str):
                raise invalid_params("refresh_token is required", "refresh_token")
            if self._tokens is None or not hmac.compare_digest(self._tokens[1].encode(),
                                                               token.encode()):
                stats.auth(VENUE, "auth_failures")
                raise RpcError(13009, "unauthorized")
            stats.auth(VENUE, "refreshes")
        else:
            raise invalid_params("grant_type must be client_credentials or refresh_token",
                                 "grant_type")
        self._tokens = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.ctx.credentials_seen.extend(self._tokens)
        lifetime = self.ctx.config.token_lifetime
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = self.spawn(self._expire(self._tokens, lifetime))
        return {"access_token": self._tokens[0], "refresh_token": self._tokens[1],
                "expires_in": int(lifetime), "scope": "connection mainaccount",
                "token_type": "bearer", "enabled_features": []}

    async def _expire(self, tokens: Tuple[str, str], lifetime: float) -> None:
        await asyncio.sleep(lifetime)
        if self._tokens is tokens:
            self._tokens = None
            self.ctx.stats.auth(VENUE, "expired")
            await self.ws.close(1008, "access token expired")

    async def _send_heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._test_pending:
                await self.ws.close(1008, "test_request not answered with public/test")
                return
            self._test_pending = True
            await self.send(HEARTBEAT, {"jsonrpc": "2.0", "method": "heartbeat",
                                        "params": {"type": "test_request"}})


# --- instruments -------------------------------------------------------------------

def instruments(universe: Universe, now: float, currency: Any, kind: Any,
                expired: Any) -> List[Record]:
    """``public/get_instruments``: raises :class:`RpcError` on a bad value. Query
    strings and JSON values are both accepted (``expired=false`` / ``false``)."""
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise invalid_params("wrong format", "currency")
    if kind is not None and (not isinstance(kind, str) or kind not in KINDS):
        raise invalid_params("wrong format", "kind")
    flag = _EXPIRED.get(expired) if isinstance(expired, (bool, str, type(None))) else None
    if flag is None:
        raise invalid_params("wrong format", "expired")
    listed = universe.records(now, delisted=flag, group=None if currency == "any" else currency)
    wanted = [record for record in listed
              if kind in (None, "any", record.get("kind"))
              or (kind == "combo" and str(record.get("kind")).endswith("_combo"))]
    return [{**record, "is_active": False} for record in wanted] if flag else wanted


def get_instruments(request: RestRequest) -> RestReply:
    """``GET /api/v2/public/get_instruments``."""
    us_in = now_us()
    try:
        answer: Tuple[str, Any] = ("result", instruments(
            request.universe, request.now, request.one("currency"), request.one("kind"),
            request.one("expired")))
    except RpcError as exc:
        answer = ("error", exc.error)
    reply = rpc_reply(us_in, None, answer)
    reply["usOut"] = now_us()
    reply["usDiff"] = reply["usOut"] - us_in
    return json_reply(reply, 400 if answer[0] == "error" else 200)


def _expiry_ms(day: int, month: int, year: int) -> int:
    """Deribit's expiries are at 08:00 UTC."""
    return calendar.timegm((year, month, day, 8, 0, 0)) * 1000


def _settlement_period(day: int, month: int, year: int) -> str:
    """``month`` for a month's last Friday, ``week`` for other Fridays, else ``day``."""
    weekday = calendar.weekday(year, month, day)
    if weekday != calendar.FRIDAY:
        return "day"
    return "month" if day + 7 > calendar.monthrange(year, month)[1] else "week"


class Deribit(SimulatedExchange):
    venue = VENUE
    session = DeribitSession
    ws_paths = ("/deribit", "/ws/api/v2")
    rest_prefix = "/deribit"
    rest_aliases = ("/api/v2/",)
    routes = (Route("/api/v2/public/get_instruments", get_instruments),)
    book_channel = "book"
    limits = Limits(max_connections=32)
    key_fields = ("client_id", "client_secret")

    def index(self, msg: Dict[str, Any]) -> Optional[List[Indexed]]:
        if "jsonrpc" not in msg:
            return None
        params = msg.get("params")
        if msg.get("method") != "subscription" or not isinstance(params, dict):
            return []
        parts = str(params.get("channel", "")).split(".")
        data = params.get("data")
        # Grouped book channels carry whole top-N books, which the simulator
        # derives from the plain change chain: only plain channels are kept.
        if len(parts) != 3 or parts[0] not in ("book", *DATA_KINDS):
            return []
        if parts[0] == "trades":
            trades = [t for t in data if isinstance(t, dict)] if isinstance(data, list) else []
            return [("trades", parts[1], {"trades": trades})] if trades else []
        if not isinstance(data, dict):
            return []
        instrument = data.get("instrument_name", parts[1])
        return [(parts[0], instrument, data)] if isinstance(instrument, str) else []

    def rename(self, channel: str, payload: Dict[str, Any], name: str) -> Dict[str, Any]:
        if channel == "trades":
            return {"trades": [{**t, "instrument_name": name} for t in payload["trades"]]}
        return {**payload, "instrument_name": name}

    def size_slots(self, msg: Dict[str, Any]) -> List[Tuple[Any, Any]]:
        """``params.data.bids/asks``: ``[action, price, amount]`` or, grouped,
        ``[price, amount]`` (the size is a level's last field)."""
        params = msg.get("params")
        data = params.get("data") if isinstance(params, dict) else None
        if not isinstance(data, dict):
            return []
        return [(level, len(level) - 1) for key in ("bids", "asks")
                for level in data.get(key) or ()]

    def unknown_message(self, name: str, product: Optional[str]) -> Dict[str, Any]:
        return {"jsonrpc": "2.0", "method": name, "params": {"instrument_name": product}}

    def break_chain(self, msg: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        params = msg.get("params")
        data = params.get("data") if isinstance(params, dict) else None
        prev = data.get("prev_change_id") if isinstance(data, dict) else None
        if not isinstance(prev, int) or isinstance(prev, bool):
            return None
        data["prev_change_id"] = prev - 1
        return msg

    def rest_error(self, status: int) -> RestReply:
        error = (RpcError(10028, "too_many_requests") if status == 429 else
                 RpcError(-32000, HTTPStatus(status).phrase.lower().replace(" ", "_")))
        return json_reply(rpc_reply(now_us(), None, ("error", error.error)), status)

    def reference_lists(self, directory: Path) -> List[ReferenceList]:
        lists = []
        for currency, file in INSTRUMENT_FILES.items():
            path = directory / file
            if not path.exists():
                continue
            body = read_reference(path)
            records = body.get("result") if isinstance(body, dict) else None
            if isinstance(records, list) and isinstance(body.get("usIn"), int):
                lists.append(ReferenceList(currency, body["usIn"] / 1000.0,
                                           [r for r in records if isinstance(r, dict)]))
        return lists

    def record_name(self, record: Record) -> str:
        return str(record.get("instrument_name"))

    def shift_record(self, record: Record, clock: ExchangeClock) -> Record:
        shifted = {**record, "creation_timestamp": clock.ms(record.get("creation_timestamp"))}
        if record.get("expiration_timestamp") != PERPETUAL_EXPIRY:
            shifted["expiration_timestamp"] = clock.ms(record.get("expiration_timestamp"))
        return shifted

    def build_record(self, name: str, listed: Sequence[Tuple[str, Record]],
                     clock: ExchangeClock) -> Optional[Tuple[str, Record]]:
        match = _NAME.fullmatch(name)
        if match is None or (match["month"] is not None and match["month"] not in _MONTHS):
            return None
        base, quote = match["base"], match["quote"]
        currency = quote or base
        kind = "option" if match["strike"] else "future"
        perpetual = match["perpetual"] is not None
        template = next((r for group, r in listed if group == currency and r.get("kind") == kind
                         and (r.get("settlement_period") == "perpetual") == perpetual), {})
        record: Record = {**template, "instrument_name": name, "kind": kind,
                          "base_currency": base, "is_active": True}
        if perpetual:
            record.update(settlement_period="perpetual", expiration_timestamp=PERPETUAL_EXPIRY)
        else:
            day, month, year = int(match["day"]), _MONTHS[match["month"]], 2000 + int(match["year"])
            if not 1 <= day <= calendar.monthrange(year, month)[1]:
                return None
            expiry = clock.ms(_expiry_ms(day, month, year))
            record.update(settlement_period=_settlement_period(day, month, year),
                          expiration_timestamp=expiry,
                          creation_timestamp=min(record.get("creation_timestamp", expiry), expiry))
        if match["strike"]:
            record.update(strike=float(match["strike"].replace("d", ".")),
                          option_type="call" if match["right"] == "C" else "put")
        return currency, record

    def family(self, name: str) -> Tuple[Hashable, ...]:
        match = _NAME.fullmatch(name)
        if match is None:
            return ()
        kind = "option" if match["strike"] else "future"
        return ((match["quote"] or match["base"], kind), kind)


EXCHANGE = Deribit()

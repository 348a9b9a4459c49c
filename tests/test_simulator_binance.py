"""The simulated Binance venues over real websockets and HTTP, on the bundled captures.

The REST depth tests check consistency the way a client must rely on it: a
client-side book built only from what was served (the snapshot, then the diffs
after it by the official rules) is compared, at every update id, with a
reference book built here independently from the capture (its recorded REST
snapshot and diffs).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from sources.capture.format import read_capture
from sources.simulator import Fault, FaultPlan, Recording, SimulatorThread, load_recording
from sources.simulator.stats import MAX_REST_SYMBOLS, SimulatorStats
from tests.helpers import drain, recv, run, send

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
SPOT = RECORDINGS / "binance_spot_btcusdt.jsonl.gz"
USDM = RECORDINGS / "binance_usdm_ethusdt.jsonl.gz"
COINM = RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz"
PAIRS = RECORDINGS / "binance_spot_10pairs.jsonl.gz"

#: (venue, capture, symbol, websocket path, REST depth path, largest limit)
MARKETS = {
    "spot": ("binance", SPOT, "BTCUSDT", "/binance/stream", "/binance/api/v3/depth", 5000),
    "usdm": ("binance_usdm", USDM, "ETHUSDT", "/binance_usdm/public/stream",
             "/binance_usdm/fapi/v1/depth", 1000),
    "coinm": ("binance_coinm", COINM, "ETHUSD_PERP", "/binance_coinm/stream",
              "/binance_coinm/dapi/v1/depth", 1000),
    "pairs": ("binance", PAIRS, "ZILUSDT", "/binance/stream", "/api/v3/depth", 5000),
}


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording([SPOT, USDM, COINM, PAIRS])


def req(request_id: Any, method: str, *params: Any) -> Dict[str, Any]:
    msg: Dict[str, Any] = {"method": method, "id": request_id}
    if params:
        msg["params"] = list(params)
    return msg


async def fetch(url: str) -> Tuple[int, Dict[str, str], Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            return resp.status, dict(resp.headers), json.loads(await resp.read())


async def data_until(ws: ClientConnection, count: int) -> List[Dict[str, Any]]:
    """The next ``count`` stream events (replies skipped)."""
    out = []
    while len(out) < count:
        msg = await recv(ws)
        if "stream" in msg:
            out.append(msg["data"])
    return out


# --- an independent reference: the capture's own book at every update id -------------

def capture_depth(path: Path, symbol: str) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """The capture's first REST snapshot of ``symbol`` and its depth diffs, in order."""
    snapshot, diffs = None, []
    for frame in read_capture(path):
        msg = frame.msg
        if frame.dir == "rest" and f"symbol={symbol}" in (frame.url or "") and snapshot is None:
            snapshot = msg
        elif frame.dir == "recv" and isinstance(msg, dict) and "stream" in msg \
                and msg["data"].get("e") == "depthUpdate" and msg["data"]["s"] == symbol:
            diffs.append(msg["data"])
    assert snapshot is not None
    return snapshot, diffs


class Book:
    """A local book kept by the official procedure (exchange-protocols.md §D)."""

    def __init__(self, snapshot: Dict[str, Any], futures: bool) -> None:
        self.futures = futures
        self.last = snapshot["lastUpdateId"]
        self.fresh = True
        self.sides = {side: {p: q for p, q in snapshot[side] if float(q)}
                      for side in ("bids", "asks")}

    def apply(self, diff: Dict[str, Any]) -> bool:
        """Apply one diff; False if it is stale (dropped). Fails on a broken chain."""
        if diff["u"] < self.last or (diff["u"] == self.last and not self.futures):
            return False
        if self.fresh and self.futures:
            assert diff["U"] <= self.last <= diff["u"], (diff["U"], self.last, diff["u"])
        elif self.fresh:
            assert diff["U"] <= self.last + 1 <= diff["u"], (diff["U"], self.last, diff["u"])
        elif self.futures:
            assert diff["pu"] == self.last, (diff["pu"], self.last)
        else:
            assert diff["U"] == self.last + 1, (diff["U"], self.last)
        self.fresh = False
        for key, side in (("b", "bids"), ("a", "asks")):
            for price, quantity in diff[key]:
                if float(quantity):
                    self.sides[side][price] = quantity
                else:
                    self.sides[side].pop(price, None)
        self.last = diff["u"]
        return True

    def top(self, n: int) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
        bids = sorted(self.sides["bids"].items(), key=lambda kv: -float(kv[0]))[:n]
        asks = sorted(self.sides["asks"].items(), key=lambda kv: float(kv[0]))[:n]
        return bids, asks


def reference_books(path: Path, symbol: str, futures: bool, depth: int) -> Dict[int, Any]:
    """The capture's book (top ``depth`` levels a side) after every diff applied."""
    snapshot, diffs = capture_depth(path, symbol)
    book = Book(snapshot, futures)
    books = {book.last: book.top(depth)}
    for diff in diffs:
        if book.apply(diff):
            books[book.last] = book.top(depth)
    return books


# --- subscribing, replies, errors -----------------------------------------------------

def test_combined_streams_serve_the_recording_in_recorded_order(recording: Recording) -> None:
    """Depth, trades and book tickers on one combined connection, whole recording:
    each event as recorded under the name subscribed (USD-M's recorded @0ms diffs
    under @100ms), every channel in recorded order and the channels interleaved
    by recorded time."""
    names = ["ethusdt@depth@100ms", "ethusdt@trade", "ethusdt@bookTicker"]

    async def client(url: str) -> List[Dict[str, Any]]:
        async with connect(url + "/binance_usdm/public/stream?streams=" + "/".join(names),
                           max_queue=None) as ws:
            messages = await drain(ws)
            assert (ws.close_code, ws.close_reason) == (1000, "end of recording")
            return messages

    with SimulatorThread(recording, speed=0, retime="none") as sim:
        messages = run(client(sim.url))
    channels = recording.channels["binance_usdm"]
    frames = {name: channels[channel]["ETHUSDT"]
              for name, channel in zip(names, ("depth", "trade", "bookTicker"))}
    for name in names:
        assert [m["data"] for m in messages if m["stream"] == name] == \
            [f.payload for f in frames[name]]
    assert len(messages) == sum(map(len, frames.values()))
    # The i-th message of a stream is its i-th recorded frame: their recorded
    # times, in the order served, never go back.
    taken = {name: 0 for name in names}
    served_ts = []
    for m in messages:
        served_ts.append(frames[m["stream"]][taken[m["stream"]]].ts)
        taken[m["stream"]] += 1
    assert served_ts == sorted(served_ts)


def test_subscribe_list_unsubscribe_properties_and_errors(recording: Recording) -> None:
    async def client(url: str) -> None:
        async with connect(url + "/binance/ws", max_queue=None) as ws:
            await send(ws, req(1, "SUBSCRIBE", "btcusdt@trade"))
            assert await recv(ws) == {"result": None, "id": 1}
            first = await recv(ws)
            assert first["e"] == "trade" and "stream" not in first  # raw stream
            await send(ws, req(2, "SET_PROPERTY", "combined", True))
            await send(ws, req(3, "GET_PROPERTY", "combined"))
            assert await replies_to(ws, 2, 3) == {2: {"result": None, "id": 2},
                                                  3: {"result": True, "id": 3}}
            assert (await recv(ws))["stream"] == "btcusdt@trade"  # wrapped from now on
            await send(ws, req(4, "SUBSCRIBE", "btcusdt@depth@100ms", "dogeusdt@trade"))
            await send(ws, req(5, "LIST_SUBSCRIPTIONS"))
            await send(ws, req(6, "UNSUBSCRIBE", "btcusdt@trade"))
            answers = await replies_to(ws, 4, 5, 6)
            assert answers[4] == {"result": None, "id": 4}  # unknown symbols are accepted
            assert answers[5]["result"] == ["btcusdt@trade", "btcusdt@depth@100ms",
                                            "dogeusdt@trade"]
            assert answers[6] == {"result": None, "id": 6}
            await send(ws, req(7, "SUBSCRIBE", "btcusdt@depth"))  # a second depth speed
            await send(ws, req(8, "SUBSCRIBE", "btcusdt@kline_1m"))
            await send(ws, req(9, "SUBSCRIBE", "BTCUSDT@trade", "btcusdt@trade"))
            await send(ws, req(10, "SET_PROPERTY", "compressed", True))
            await send(ws, req(11, "SET_PROPERTY", "combined", "yes"))
            await send(ws, req(12, "PUBLISH", "x"))
            await send(ws, {"method": "LIST_SUBSCRIPTIONS", "id": -3})
            await ws.send("{not json")
            answers = await replies_to(ws, 7, 8, 9, 10, 11, 12, None, None)
            assert [answers[i]["code"] for i in (7, 8, 9, 10, 11, 12)] == [2, 2, 2, 0, 1, 2]
            assert "one per symbol" in answers[7]["msg"] and "kline" in answers[8]["msg"]
            assert answers[9]["msg"] == "Invalid request: invalid stream"
            assert "unknown variant 'PUBLISH'" in answers[12]["msg"]
            assert sorted(a["code"] for a in answers[None]) == [2, 3]
            # Nothing of the failed requests was subscribed, and from now on only
            # depth diffs come (the trade stream was unsubscribed).
            await send(ws, req(13, "LIST_SUBSCRIPTIONS"))
            assert (await replies_to(ws, 13))[13]["result"] == ["btcusdt@depth@100ms",
                                                                "dogeusdt@trade"]
            for _ in range(5):
                msg = await recv(ws)
                assert msg["stream"] == "btcusdt@depth@100ms"

    # Thirteen requests back to back: over spot's 5 a second, which is tested below.
    with SimulatorThread(recording, rate=100,
                         limits={"binance": {"connection_messages_per_second": None}}) as sim:
        run(client(sim.url))
        stats = sim.stats["binance"]
    assert stats.subscribe_sizes[1] >= 3 and stats.subscribe_sizes[2] == 2


async def replies_to(ws: ClientConnection, *ids: Any) -> Dict[Any, Any]:
    """The replies with these ids (None: replies without an id, listed), skipping
    stream events."""
    want = list(ids)
    got: Dict[Any, Any] = {}
    while want:
        msg = await recv(ws)
        if "stream" in msg or "e" in msg:
            continue
        key = msg.get("id")
        want.remove(key)
        if key is None:
            got.setdefault(None, []).append(msg)
        else:
            got[key] = msg
    return got


def test_handshake_refuses_bad_stream_names(recording: Recording) -> None:
    async def client(url: str) -> None:
        for path in ("/binance/stream?streams=btcusdt@trade/btcusdt@nope",
                     "/binance/ws/btcusdt@kline_1m", "/binance_coinm/stream?streams=x"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + path):
                    pass
            assert info.value.response.status_code == 400
            assert info.value.response.body.startswith(b"Invalid request")
        async with connect(url + "/binance/ws/btcusdt@trade") as ws:  # one raw stream
            assert (await recv(ws))["e"] == "trade"

    with SimulatorThread(recording, rate=50) as sim:
        run(client(sim.url))


def test_usdm_paths_deliver_only_their_tier_silently(recording: Recording) -> None:
    """The 2026 URL split: /public (and the legacy path) never deliver aggTrade or
    markPrice, /market never depth, trades or book tickers; both accept them."""

    async def public(url: str, path: str) -> List[Dict[str, Any]]:
        async with connect(url + path, max_queue=None) as ws:
            await send(ws, req(1, "SUBSCRIBE", "ethusdt@aggTrade", "ethusdt@markPrice@1s",
                               "ethusdt@trade"))
            assert await recv(ws) == {"result": None, "id": 1}
            return await drain(ws)

    async def market(url: str) -> None:
        async with connect(url + "/market/stream") as ws:
            await send(ws, req(1, "SUBSCRIBE", "ethusdt@depth@0ms", "ethusdt@trade",
                               "ethusdt@bookTicker"))
            await send(ws, req(2, "LIST_SUBSCRIPTIONS"))
            assert await recv(ws) == {"result": None, "id": 1}
            listed = await recv(ws)
            assert listed["id"] == 2 and len(listed["result"]) == 3
            with pytest.raises(TimeoutError):  # the whole recording takes ~0.1 s
                await recv(ws, timeout=1.0)

    with SimulatorThread(recording, speed=0, retime="none") as sim:
        trades = recording.channels["binance_usdm"]["trade"]["ETHUSDT"]
        for path in ("/binance_usdm/public/stream", "/binance_usdm/stream"):
            got = run(public(sim.url, path))
            assert [m["data"] for m in got] == [f.payload for f in trades]
            assert {m["stream"] for m in got} == {"ethusdt@trade"}
        run(market(sim.url))


# --- keepalive, lifetime, message limit ----------------------------------------------

class CountingClient(ClientConnection):
    pings = 0

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings += 1
        super().process_event(event)


def test_pings_keep_an_answering_client_and_close_a_silent_one(recording: Recording) -> None:
    async def answering(url: str) -> int:
        async with connect(url + "/binance/ws", create_connection=CountingClient,
                           ping_interval=None) as ws:
            await asyncio.sleep(1.0)
            await send(ws, req(1, "LIST_SUBSCRIPTIONS"))
            assert (await recv(ws))["id"] == 1  # still open
            return ws.pings

    async def silent(url: str) -> Tuple[Optional[int], str]:
        async with connect(url + "/binance_coinm/ws", ping_interval=None) as ws:
            ws.transport.pause_reading()  # pings go unread, so unanswered...
            for _ in range(20):  # ...and unsolicited pongs keep nothing alive
                await ws.pong()
                await asyncio.sleep(0.05)
            ws.transport.resume_reading()
            with pytest.raises(ConnectionClosed):
                await recv(ws, timeout=5)
            return ws.close_code, ws.close_reason

    with SimulatorThread(recording, ping_interval=0.2, pong_timeout=0.3,
                         limits={"binance_coinm": {"connection_messages_per_second": None}}) as sim:
        assert run(answering(sim.url)) >= 2
        assert run(silent(sim.url)) == (1011, "keepalive ping timeout")


def test_lifetime_ends_with_server_shutdown_then_close(recording: Recording) -> None:
    async def client(url: str) -> Tuple[List[Dict[str, Any]], Optional[int]]:
        async with connect(url + "/binance/stream?streams=btcusdt@bookTicker",
                           max_queue=None) as ws:
            messages = await drain(ws)
            return messages, ws.close_code

    with SimulatorThread(recording, rate=20, lifetime=1.0, shutdown_notice=0.4) as sim:
        started = time.monotonic()
        messages, code = run(client(sim.url))
        lasted = time.monotonic() - started
    shutdown = [i for i, m in enumerate(messages) if m["data"].get("e") == "serverShutdown"]
    assert len(shutdown) == 1 and code == 1001 and lasted >= 0.9
    (i,) = shutdown
    assert messages[i]["stream"] == "btcusdt@bookTicker"
    assert isinstance(messages[i]["data"]["E"], int)
    assert 0 < i < len(messages) - 1  # data before it, and during the notice


def test_message_limit_closes_the_connection(recording: Recording) -> None:
    async def client(url: str, path: str, pings: int, messages: int) -> Tuple[int, Any]:
        """Send back to back; the replies received, and how the connection ended."""
        answered = 0
        async with connect(url + path, ping_interval=None) as ws:
            for _ in range(pings):
                await ws.ping()
            for i in range(messages):
                await send(ws, req(i, "LIST_SUBSCRIPTIONS"))
            try:
                while answered < messages:
                    await recv(ws)
                    answered += 1
            except ConnectionClosed:
                pass
            return answered, ws.close_code

    with SimulatorThread(recording, speed=0) as sim:
        # Spot: 5 frames a second, pings included; futures: 10.
        # The sixth frame closes the connection; requests before it may be
        # answered first or not (they are queued when the cut comes).
        answered, code = run(client(sim.url, "/binance/ws", 3, 3))
        assert answered <= 2 and code == 1008
        assert run(client(sim.url, "/binance/ws", 0, 5)) == (5, None)
        answered, code = run(client(sim.url, "/binance_usdm/public/ws", 0, 11))
        assert answered <= 10 and code == 1008
        spot, usdm = sim.stats["binance"], sim.stats["binance_usdm"]
    assert (spot.message_limit_closes, usdm.message_limit_closes) == (1, 1)
    assert spot.rate_limited >= 1 and usdm.peak_message_rate >= 11


# --- REST depth ------------------------------------------------------------------------

@pytest.mark.parametrize("market", list(MARKETS))
def test_depth_snapshot_is_consistent_with_the_stream(recording: Recording, market: str) -> None:
    """Twice per connection (at the start, and mid-stream as a resync would): the
    served snapshot plus the served diffs after it, applied by the official rules,
    give the capture's own book at every update id."""
    venue, capture, symbol, path, depth_path, limit = MARKETS[market]
    futures = venue != "binance"
    reference = reference_books(capture, symbol, futures, 200)
    name = f"{symbol.lower()}@depth@100ms"

    async def client(url: str, http: str) -> List[Tuple[int, int]]:
        checked = []
        async with connect(f"{url}{path}?streams={name}", max_queue=None) as ws:
            buffered = await data_until(ws, 1)
            for _ in range(2):
                status, _, snapshot = await fetch(f"{http}{depth_path}?symbol={symbol}"
                                                  f"&limit={limit}")
                assert status == 200
                book = Book(snapshot, futures)
                assert book.top(200) == reference[book.last]
                applied = 0
                while applied < 30:
                    diff = buffered.pop(0) if buffered else (await data_until(ws, 1))[0]
                    if book.apply(diff):
                        applied += 1
                        assert book.top(200) == reference[book.last]
                checked.append((snapshot["lastUpdateId"], book.last))
                buffered = await data_until(ws, 40)
        return checked

    with SimulatorThread(recording, rate=200, retime="none") as sim:
        checked = run(client(sim.url, sim.http_url), timeout=30)
    (first, _), (second, _) = checked
    assert first < second


def test_depth_without_a_connection_is_the_recorded_snapshot(recording: Recording) -> None:
    snapshot, _ = capture_depth(COINM, "ETHUSD_PERP")

    async def client(http: str) -> List[Any]:
        return [await fetch(http + p) for p in (
            "/dapi/v1/depth?symbol=ETHUSD_PERP&limit=5", "/dapi/v1/depth?symbol=ETHUSD_PERP",
            "/dapi/v1/depth?symbol=ETHUSD_PERP&limit=7", "/dapi/v1/depth?limit=5",
            "/dapi/v1/depth?symbol=BTCUSD_PERP", "/dapi/v1/depth?symbol=NOPE_PERP",
            "/api/v3/depth?symbol=BTCUSDT&limit=9000", "/api/v3/depth?symbol=BTCUSDT&limit=x")]

    with SimulatorThread(recording, retime="none") as sim:
        five, default, seven, nameless, unbooked, unknown, capped, bad = run(client(sim.http_url))
    assert five[0] == 200 and five[2] == {
        "lastUpdateId": snapshot["lastUpdateId"], "symbol": "ETHUSD_PERP", "pair": "ETHUSD",
        "E": snapshot["E"], "T": snapshot["T"], "bids": snapshot["bids"][:5],
        "asks": snapshot["asks"][:5]}
    assert len(default[2]["bids"]) == 500 and five[1]["X-MBX-USED-WEIGHT-1M"] == "2"
    assert default[1]["X-MBX-USED-WEIGHT-1M"] == "12"  # 2 + 10 for the default 500
    assert (seven[0], seven[2]["code"]) == (400, -1130)
    assert (nameless[0], nameless[2]["code"]) == (400, -1102)
    assert (unbooked[0], unbooked[2]["code"]) == (400, -1121)
    assert "clone_books" in unbooked[2]["msg"]
    assert unknown[2] == {"code": -1121, "msg": "Invalid symbol."}
    assert capped[0] == 200 and capped[1]["X-MBX-USED-WEIGHT-1M"] == "250"
    assert (bad[0], bad[2]["code"]) == (400, -1100)


def test_clone_books_serve_listed_symbols_with_their_own_names(recording: Recording) -> None:
    async def client(url: str, http: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        async with connect(url + "/binance_coinm/stream?streams=btcusd_perp@depth") as ws:
            diff = (await data_until(ws, 1))[0]
            return diff, (await fetch(http + "/dapi/v1/depth?symbol=BTCUSD_PERP&limit=5"))[2]

    with SimulatorThread(recording, rate=50, retime="none", clone_books=True) as sim:
        diff, snapshot = run(client(sim.url, sim.http_url))
    source = recording.channels["binance_coinm"]["depth"]["ETHUSD_PERP"][0].payload
    assert diff == {**source, "s": "BTCUSD_PERP", "ps": "BTCUSD"}
    assert (snapshot["symbol"], snapshot["pair"]) == ("BTCUSD_PERP", "BTCUSD")


# --- REST weight ---------------------------------------------------------------------

def test_weight_budget_429_then_418(recording: Recording) -> None:
    url = "/api/v3/depth?symbol=BTCUSDT&limit=100"  # weight 5

    async def client(http: str) -> List[Tuple[int, Dict[str, str], Any]]:
        return [await fetch(http + url) for _ in range(15)]

    with SimulatorThread(recording, limits={"binance": {"rest_weight_per_minute": 60}}) as sim:
        left = 60 - time.monotonic() % 60
        if left < 5:  # the budget resets every minute: start in a fresh one
            time.sleep(left)
        replies = run(client(sim.http_url))
        stats = sim.stats["binance"]
    statuses = [status for status, _, _ in replies]
    assert statuses == [200] * 12 + [429, 418, 418]
    assert [h["X-MBX-USED-WEIGHT-1M"] for _, h, _ in replies[:13]] == \
        [str(5 * i) for i in range(1, 13)] + ["60"]
    (_, too_many, body), (_, banned, ban_body) = replies[12:14]
    assert body["code"] == -1003
    assert "current limit is 60 request weight per 1 MINUTE" in body["msg"]
    assert 0 < int(too_many["Retry-After"]) <= 60
    assert ban_body["code"] == -1003 and "IP banned until" in ban_body["msg"]
    assert 60 < int(banned["Retry-After"]) <= 120  # two windows
    assert stats.rest_statuses == {200: 12, 429: 1, 418: 2}
    assert stats.rest_symbols == {("/api/v3/depth", "BTCUSDT"): 15}
    assert (stats.rest_weight, stats.peak_rest_weight) == (60, 60)


def test_rest_requests_are_counted_per_symbol_with_bounded_keys() -> None:
    stats = SimulatorStats()
    for i in range(MAX_REST_SYMBOLS + 5):
        stats.rest("binance", 400, "/api/v3/depth", f"X{i}")
    stats.rest("binance", 200, "/api/v3/depth", "X0")
    stats.rest("binance", 200, "/api/v3/exchangeInfo")
    counted = stats["binance"].rest_symbols
    assert len(counted) == MAX_REST_SYMBOLS and counted[("/api/v3/depth", "X0")] == 2
    assert stats["binance"].rest_requests == MAX_REST_SYMBOLS + 7


def test_a_client_that_waits_out_retry_after_is_served_again(recording: Recording) -> None:
    url = "/fapi/v1/depth?symbol=ETHUSDT&limit=100"  # weight 5

    async def client(http: str) -> List[int]:
        statuses = []
        for _ in range(3):
            status, headers, _ = await fetch(http + url)
            statuses.append(status)
        assert statuses[-1] == 429
        await asyncio.sleep(int(headers["Retry-After"]))
        statuses.append((await fetch(http + url))[0])
        return statuses

    with SimulatorThread(recording, weight_window=1.0,
                         limits={"binance_usdm": {"rest_weight_per_minute": 10}}) as sim:
        time.sleep(1.0 - time.monotonic() % 1.0)  # start at the start of a window
        statuses = run(client(sim.http_url))
    assert statuses[-1] == 200 and statuses.count(429) == 1


# --- faults --------------------------------------------------------------------------

def test_gap_and_chain_break_show_in_the_update_ids(recording: Recording) -> None:
    """Spot: a gap makes U jump past u + 1. Futures: a chain break leaves the data
    as recorded but pu one short of the previous u."""
    plan = FaultPlan([Fault("gap", venue="binance", after=10, frames=2),
                      Fault("chain_break", venue="binance_usdm", after=10)])

    async def client(url: str, path: str) -> List[Dict[str, Any]]:
        async with connect(url + path) as ws:
            return await data_until(ws, 15)

    with SimulatorThread(recording, rate=100, retime="none", faults=plan) as sim:
        spot = run(client(sim.url, "/binance/stream?streams=btcusdt@depth@100ms"))
        usdm = run(client(sim.url, "/public/stream?streams=ethusdt@depth@0ms"))
    recorded = [f.payload for f in recording.binance["depth"]["BTCUSDT"]]
    assert spot[:10] == recorded[:10] and spot[10:] == recorded[12:17]
    assert spot[10]["U"] > spot[9]["u"] + 1
    futures = [f.payload for f in recording.channels["binance_usdm"]["depth"]["ETHUSDT"]]
    assert usdm[10] == {**futures[10], "pu": futures[10]["pu"] - 1}
    assert usdm[10]["pu"] != usdm[9]["u"] and usdm[11] == futures[11]
    assert [(r.venue, r.kind) for r in plan.injected] == [
        ("binance", "gap"), ("binance", "gap"), ("binance_usdm", "chain_break")]


def test_stale_snapshot_is_older_than_the_stream(recording: Recording) -> None:
    """The fault serves the book as it was 30 diffs back: a true past book (the
    capture's at that id), too old for the diffs the client buffered after it."""
    reference = reference_books(SPOT, "BTCUSDT", False, 100)
    plan = FaultPlan([Fault("stale_snapshot", venue="binance", frames=30)])

    async def client(url: str, http: str) -> Tuple[Dict[str, Any], Dict[str, Any], int]:
        async with connect(url + "/binance/stream?streams=btcusdt@depth@100ms",
                           max_queue=None) as ws:
            seen = await data_until(ws, 50)
            stale = (await fetch(http + "/api/v3/depth?symbol=BTCUSDT&limit=5000"))[2]
            fresh = (await fetch(http + "/api/v3/depth?symbol=BTCUSDT&limit=5000"))[2]
            return stale, fresh, seen[-1]["u"]

    with SimulatorThread(recording, rate=100, retime="none", faults=plan) as sim:
        stale, fresh, last_seen = run(client(sim.url, sim.http_url))
    diffs = [f.payload for f in recording.binance["depth"]["BTCUSDT"]]
    ids = [d["u"] for d in diffs]
    assert ids.index(fresh["lastUpdateId"]) - ids.index(stale["lastUpdateId"]) >= 30
    assert stale["lastUpdateId"] < last_seen  # older than what the client already has
    assert Book(stale, False).top(100) == reference[stale["lastUpdateId"]]
    assert fresh["lastUpdateId"] >= last_seen
    assert [r.kind for r in plan.injected] == ["stale_snapshot"]


def test_rest_faults_429_418_5xx_and_slow(recording: Recording) -> None:
    plan = FaultPlan([
        Fault("http_error", venue="binance", path="/api/v3/depth", status=429, retry_after=3),
        Fault("http_error", venue="binance", path="/api/v3/depth", status=418, retry_after=120,
              after=1),
        Fault("http_error", venue="binance_usdm", status=503),
        Fault("slow_reply", venue="binance_coinm", duration=0.5)])

    async def client(http: str) -> List[Any]:
        out = [await fetch(http + "/binance/api/v3/depth?symbol=BTCUSDT") for _ in range(3)]
        out.append(await fetch(http + "/fapi/v1/depth?symbol=ETHUSDT"))
        started = time.monotonic()
        out.append(await fetch(http + "/dapi/v1/depth?symbol=ETHUSD_PERP"))
        out.append(time.monotonic() - started)
        return out

    with SimulatorThread(recording, faults=plan) as sim:
        limited, banned, served, unavailable, slow, waited = run(client(sim.http_url))
    assert (limited[0], limited[1]["Retry-After"], limited[2]["code"]) == (429, "3", -1003)
    assert (banned[0], banned[1]["Retry-After"]) == (418, "120")
    assert served[0] == 200 and served[2]["lastUpdateId"]
    assert (unavailable[0], unavailable[2]["code"]) == (503, -1001)
    assert slow[0] == 200 and waited >= 0.5


# --- exchangeInfo --------------------------------------------------------------------

def bundled(name: str) -> Any:
    with gzip.open(RECORDINGS / "reference" / name, "rb") as f:
        return json.loads(f.read())


def test_exchange_info_is_the_bundled_reply(recording: Recording) -> None:
    spot = bundled("binance_exchange_info.json.gz")
    coinm = bundled("binance_coinm_exchange_info.json.gz")

    async def client(http: str) -> List[Any]:
        return [await fetch(http + p) for p in (
            "/api/v3/exchangeInfo", "/api/v3/exchangeInfo?symbol=ETHBTC",
            '/api/v3/exchangeInfo?symbols=["ETHBTC","BNBBTC"]',
            "/api/v3/exchangeInfo?symbol=NOPE", "/binance_coinm/dapi/v1/exchangeInfo")]

    with SimulatorThread(recording) as sim:
        everything, one, two, unknown, futures = run(client(sim.http_url))
    body = everything[2]
    assert body["symbols"] == spot["symbols"]
    assert {k: v for k, v in body.items() if k not in ("symbols", "serverTime", "rateLimits")} \
        == {k: v for k, v in spot.items() if k not in ("symbols", "serverTime", "rateLimits")}
    assert body["rateLimits"][0]["limit"] == 6000  # the budget served, not 2021's 1200
    assert abs(body["serverTime"] - time.time() * 1000) < 60_000
    assert everything[1]["X-MBX-USED-WEIGHT-1M"] == "20"
    assert [s["symbol"] for s in one[2]["symbols"]] == ["ETHBTC"]
    assert [s["symbol"] for s in two[2]["symbols"]] == ["ETHBTC", "BNBBTC"]
    assert (unknown[0], unknown[2]["code"]) == (400, -1121)
    served = {s["symbol"]: s for s in futures[2]["symbols"]}
    moves = set()
    for record in coinm["symbols"]:
        got = served[record["symbol"]]
        assert {k: v for k, v in got.items() if not k.endswith("Date")} == \
            {k: v for k, v in record.items() if not k.endswith("Date")}
        moves.add(got["onboardDate"] - record["onboardDate"])
        if record["contractType"] == "PERPETUAL":
            assert got["deliveryDate"] == record["deliveryDate"]  # 2100: not a time
        else:
            moves.add(got["deliveryDate"] - record["deliveryDate"])
    (moved,) = moves  # the list's own offset, to the server's start
    assert moved > 0 and moved % 1000 == 0

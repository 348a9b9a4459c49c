"""The exchange simulator, exercised the way lobstream's sources use it: a real
``websockets`` client on loopback against the bundled recordings.

Each test starts its own simulator (ephemeral port) and bounds every wait, so a
hang fails fast instead of stalling the suite. Tests that act mid-stream or hang
up early use ``rate`` (fixed frames per second): it keeps the replay running while
the client acts, independently of the recording's clock, and it spares a client
that stops reading a flood it would have to drain before its close handshake
completes (``websockets`` stops reading once its receive queue is full). For
the same reason clients that hang up mid-stream have an unbounded queue: the
``rate`` pacer catches up in a burst on the time a multi-MB snapshot took to
send, and a client that stops reading then would never see the close frame.
"""

from __future__ import annotations

import asyncio
import csv
import re
import select
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sources.simulator import (
    OutFrame,
    Recording,
    SendRecord,
    SimulatorThread,
    load_recording,
)
from tests.helpers import drain, recv, run, send

ROOT = Path(__file__).resolve().parent.parent
COINBASE_CAPTURE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT_CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"
DERIBIT_GAP_CAPTURE = ROOT / "recordings" / "deribit_gap.jsonl"
#: The BTC-USD snapshot is one ~5 MB frame.
MAX_SIZE = 16 * 2**20
#: An option with a long, contiguous change chain in the Deribit recording.
DERIBIT_INSTRUMENT = "ETH-9APR21-1950-C"

@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording([COINBASE_CAPTURE, DERIBIT_CAPTURE])


def sub(channel: str, *products: str, kind: str = "subscribe") -> Dict[str, Any]:
    msg: Dict[str, Any] = {"type": kind, "channel": channel}
    if products:
        msg["product_ids"] = list(products)
    return msg


def rpc(request_id: int, method: str, **params: Any) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def book_channel(instrument: str = DERIBIT_INSTRUMENT, interval: str = "100ms") -> str:
    return f"book.{instrument}.{interval}"


# --- client-side books, built only from what was received -----------------------

def apply_coinbase(book: Dict[str, Dict[str, str]], event: Dict[str, Any]) -> None:
    if event["type"] == "snapshot":
        book["bid"].clear()
        book["offer"].clear()
    for u in event["updates"]:
        side = book["bid" if u["side"] == "bid" else "offer"]
        if Decimal(u["new_quantity"]) == 0:
            side.pop(u["price_level"], None)
        else:
            side[u["price_level"]] = u["new_quantity"]


def apply_deribit(book: Dict[str, Dict[float, float]], data: Dict[str, Any]) -> None:
    if "prev_change_id" not in data:
        book["bids"].clear()
        book["asks"].clear()
    for key in ("bids", "asks"):
        for action, price, amount in data[key]:
            if action == "delete":
                book[key].pop(price, None)
            else:
                book[key][price] = amount


# --- Coinbase Advanced Trade ------------------------------------------------------

RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def test_coinbase_subscriptions_reply(recording: Recording) -> None:
    async def client(url: str) -> None:
        async with connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None) as ws:
            await send(ws, {**sub("level2", "BTC-USD"), "jwt": "ignored"})
            first = await recv(ws)
            assert first["channel"] == "subscriptions"
            assert first["sequence_num"] == 0 and first["client_id"] == ""
            assert RFC3339_NS.match(first["timestamp"])
            assert first["events"] == [{"subscriptions": {"level2": ["BTC-USD"]}}]
            await send(ws, sub("heartbeats"))
            while (msg := await recv(ws))["channel"] != "subscriptions":
                pass
            assert msg["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"],
                                                        "level2": ["BTC-USD"]}}]

    with SimulatorThread(recording, rate=50) as sim:
        run(client(sim.url))


def test_coinbase_first_l2_is_the_full_recorded_snapshot(recording: Recording) -> None:
    recorded = recording.coinbase["l2_data"]["BTC-USD"][0].payload
    assert recorded["type"] == "snapshot" and len(recorded["updates"]) == 46_000

    async def client(url: str) -> Dict[str, Any]:
        async with connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None) as ws:
            await send(ws, sub("level2", "BTC-USD"))
            while (msg := await recv(ws))["channel"] != "l2_data":
                pass
            return msg

    with SimulatorThread(recording, rate=50, retime="none") as sim:
        msg = run(client(sim.url))
    (event,) = msg["events"]
    assert event == recorded  # every level, prices as strings, asks spelled "offer"
    assert {u["side"] for u in event["updates"]} == {"bid", "offer"}


def test_coinbase_sequence_heartbeats_and_end_of_recording(recording: Recording) -> None:
    """The whole recording at 8x: one sequence_num counter over every channel,
    a heartbeat about once a second, and a clean close once everything is sent."""
    sent: List[SendRecord] = []

    async def client(url: str) -> Dict[str, Any]:
        messages, heartbeat_times = [], []
        async with connect(url + "/coinbase", max_size=MAX_SIZE) as ws:
            await send(ws, sub("level2", "BTC-USD", "ETH-USD"))
            await send(ws, sub("heartbeats"))
            await send(ws, sub("ticker", "BTC-USD"))
            try:
                async for raw in ws:
                    msg = orjson.loads(raw)
                    messages.append(msg)
                    if msg["channel"] == "heartbeats":
                        heartbeat_times.append(time.monotonic())
            except ConnectionClosed:
                pass
            return {"messages": messages, "heartbeat_times": heartbeat_times,
                    "close": (ws.close_code, ws.close_reason)}

    with SimulatorThread(recording, speed=8, send_log=sent.append) as sim:
        result = run(client(sim.url), timeout=20)

    messages = result["messages"]
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))
    assert result["close"] == (1000, "end of recording")

    l2 = [m for m in messages if m["channel"] == "l2_data"]
    recorded = recording.coinbase["l2_data"]
    assert len(l2) == len(recorded["BTC-USD"]) + len(recorded["ETH-USD"])
    assert [(r.product, r.seq) for r in sent] == [
        (m["events"][0]["product_id"], m["sequence_num"]) for m in l2]
    assert sum(m["channel"] == "ticker" for m in messages) == len(recording.coinbase["ticker"]["BTC-USD"])

    beats = [m["events"][0] for m in messages if m["channel"] == "heartbeats"]
    assert len(beats) >= 2
    counters = [b["heartbeat_counter"] for b in beats]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert all(" +0000 UTC m=+" in b["current_time"] for b in beats)
    gaps = [b - a for a, b in zip(result["heartbeat_times"], result["heartbeat_times"][1:])]
    assert all(0.6 < g < 1.4 for g in gaps), gaps


def test_coinbase_resubscribe_gives_snapshot_of_the_received_book(recording: Recording) -> None:
    frames = recording.coinbase["l2_data"]["BTC-USD"]

    async def client(url: str) -> None:
        book: Dict[str, Dict[str, str]] = {"bid": {}, "offer": {}}
        received = 0  # recorded events received so far
        async with connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None) as ws:
            await send(ws, sub("level2", "BTC-USD"))
            while received < 20:
                msg = await recv(ws)
                if msg["channel"] == "l2_data":
                    apply_coinbase(book, msg["events"][0])
                    received += 1
            await send(ws, sub("level2", "BTC-USD", kind="unsubscribe"))
            await send(ws, sub("level2", "BTC-USD"))
            replies = []
            while True:
                msg = await recv(ws)
                if msg["channel"] == "subscriptions":
                    replies.append(msg["events"][0]["subscriptions"])
                elif msg["events"][0]["type"] == "update":
                    apply_coinbase(book, msg["events"][0])
                    received += 1
                else:
                    break
            assert replies == [{}, {"level2": ["BTC-USD"]}]
            snapshot = msg["events"][0]
            assert snapshot["product_id"] == "BTC-USD" and received < len(frames)
            bids = [(u["price_level"], u["new_quantity"]) for u in snapshot["updates"]
                    if u["side"] == "bid"]
            offers = [(u["price_level"], u["new_quantity"]) for u in snapshot["updates"]
                      if u["side"] == "offer"]
            assert len(bids) + len(offers) == len(snapshot["updates"])
            assert dict(bids) == book["bid"] and dict(offers) == book["offer"]
            assert [Decimal(p) for p, _ in bids] == sorted((Decimal(p) for p, _ in bids), reverse=True)
            assert [Decimal(p) for p, _ in offers] == sorted(Decimal(p) for p, _ in offers)
            # ...and the recording carries on where the client left it.
            nxt = await recv(ws)
            assert nxt["events"][0] == frames[received].payload

    with SimulatorThread(recording, rate=100, retime="none") as sim:
        run(client(sim.url))


def test_coinbase_errors_name_the_bad_value(recording: Recording) -> None:
    async def client(url: str) -> None:
        async with connect(url + "/coinbase", max_size=MAX_SIZE) as ws:
            await send(ws, sub("level2", "BTC-USD", "DOGE-XYZ"))
            error = await recv(ws)
            assert error["type"] == "error" and "DOGE-XYZ" in error["message"]
            await send(ws, sub("level3", "BTC-USD"))
            error = await recv(ws)
            assert error["type"] == "error" and "level3" in error["message"]
            # Nothing was subscribed and the connection is still usable.
            await send(ws, sub("heartbeats"))
            reply = await recv(ws)
            assert reply["sequence_num"] == 0
            assert reply["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]

    with SimulatorThread(recording, speed=0) as sim:
        run(client(sim.url))


def test_coinbase_closes_without_subscribe(recording: Recording) -> None:
    async def client(url: str) -> Optional[int]:
        async with connect(url + "/coinbase") as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code

    with SimulatorThread(recording, subscribe_timeout=0.3) as sim:
        assert run(client(sim.url)) == 1008


def test_frame_filter_sees_every_frame_after_stamping(recording: Recording) -> None:
    """The fault-injection hook: dropping a stamped book frame leaves a one-number
    gap in sequence_num, as a frame lost by the exchange would."""
    sent: List[SendRecord] = []

    def factory(venue: str, number: int):
        seen = {"book": 0}

        async def drop_third_book_frame(frame: OutFrame) -> Sequence[OutFrame]:
            if frame.kind == "book":
                seen["book"] += 1
                if seen["book"] == 3:
                    return []
            return [frame]
        return drop_third_book_frame

    async def client(url: str) -> List[int]:
        async with connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None) as ws:
            await send(ws, sub("level2", "ETH-USD"))
            return [(await recv(ws))["sequence_num"] for _ in range(6)]

    with SimulatorThread(recording, rate=100, send_log=sent.append,
                         frame_filters=factory) as sim:
        assert run(client(sim.url)) == [0, 1, 2, 4, 5, 6]
    assert [r.seq for r in sent[:4]] == [1, 2, 4, 5]


def test_coinbase_two_products_on_one_connection(recording: Recording) -> None:
    """One level2 subscribe naming both products, then a resubscribe of one of
    them: a fresh snapshot for it alone while the other carries on, and one
    sequence_num counter over the whole connection."""
    recorded = recording.coinbase["l2_data"]

    async def client(url: str) -> None:
        books = {p: {"bid": {}, "offer": {}} for p in ("BTC-USD", "ETH-USD")}
        received = {"BTC-USD": 0, "ETH-USD": 0}
        replies, seqs = [], []

        async def take() -> Dict[str, Any]:
            msg = await recv(ws)
            seqs.append(msg["sequence_num"])
            if msg["channel"] == "subscriptions":
                replies.append(msg["events"][0]["subscriptions"])
            return msg

        async with connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None) as ws:
            await send(ws, sub("level2", "BTC-USD", "ETH-USD"))
            while min(received.values()) < 15:
                msg = await take()
                if msg["channel"] == "l2_data":
                    event = msg["events"][0]
                    apply_coinbase(books[event["product_id"]], event)
                    received[event["product_id"]] += 1
            await send(ws, sub("level2", "ETH-USD", kind="unsubscribe"))
            await send(ws, sub("level2", "ETH-USD"))
            while True:
                msg = await take()
                if msg["channel"] != "l2_data":
                    continue
                event = msg["events"][0]
                product = event["product_id"]
                if event["type"] == "snapshot":
                    break
                assert event == recorded[product][received[product]].payload
                apply_coinbase(books[product], event)
                received[product] += 1
            assert product == "ETH-USD"
            levels = {side: {u["price_level"]: u["new_quantity"] for u in event["updates"]
                             if u["side"] == side} for side in ("bid", "offer")}
            assert levels == books["ETH-USD"]
            while (msg := await take())["channel"] != "l2_data" or \
                    msg["events"][0]["product_id"] != "ETH-USD":
                pass
            assert msg["events"][0] == recorded["ETH-USD"][received["ETH-USD"]].payload
        assert replies == [{"level2": ["BTC-USD", "ETH-USD"]}, {"level2": ["BTC-USD"]},
                           {"level2": ["BTC-USD", "ETH-USD"]}]
        assert seqs == list(range(len(seqs)))

    with SimulatorThread(recording, rate=200, retime="none") as sim:
        run(client(sim.url), timeout=30)


# --- Deribit ----------------------------------------------------------------------

def test_deribit_replies_notifications_and_chains(recording: Recording) -> None:
    instruments = sorted(recording.deribit)

    async def client(url: str) -> Dict[str, Any]:
        async with connect(url + "/ws/api/v2") as ws:
            channels = [book_channel(i) for i in instruments]
            await send(ws, rpc(42, "public/subscribe", channels=channels))
            reply = await recv(ws)
            assert reply["id"] == 42 and reply["result"] == channels
            assert reply["testnet"] is False
            assert reply["usDiff"] == reply["usOut"] - reply["usIn"] >= 0
            return {"notes": await drain(ws), "close": (ws.close_code, ws.close_reason)}

    with SimulatorThread(recording, speed=0) as sim:
        result = run(client(sim.url))
    assert result["close"] == (1000, "end of recording")
    last: Dict[str, int] = {}
    for note in result["notes"]:
        assert "id" not in note and note["method"] == "subscription"
        data = note["params"]["data"]
        instrument = data["instrument_name"]
        assert note["params"]["channel"] == book_channel(instrument)
        if instrument not in last:
            assert "prev_change_id" not in data
        else:
            assert data["prev_change_id"] == last[instrument]
        last[instrument] = data["change_id"]
    assert set(last) == set(instruments)
    assert len(result["notes"]) == sum(len(f) for f in recording.deribit.values())


def test_deribit_resubscribe_snapshot_continues_the_chain(recording: Recording) -> None:
    frames = recording.deribit[DERIBIT_INSTRUMENT]
    channel = book_channel()

    async def client(url: str) -> None:
        book: Dict[str, Dict[float, float]] = {"bids": {}, "asks": {}}
        received, last_change = 0, None
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/subscribe", channels=[channel]))
            assert (await recv(ws))["result"] == [channel]
            while received < 10:
                data = (await recv(ws))["params"]["data"]
                apply_deribit(book, data)
                received, last_change = received + 1, data["change_id"]
            await send(ws, rpc(2, "public/unsubscribe", channels=[channel]))
            await send(ws, rpc(3, "public/subscribe", channels=[channel]))
            replies = {}
            while True:
                msg = await recv(ws)
                if "id" in msg:
                    replies[msg["id"]] = msg["result"]
                    continue
                data = msg["params"]["data"]
                if "prev_change_id" not in data:
                    break
                assert data["prev_change_id"] == last_change
                apply_deribit(book, data)
                received, last_change = received + 1, data["change_id"]
            assert replies == {2: [channel], 3: [channel]}
            assert data["type"] == "snapshot" and data["change_id"] == last_change
            assert all(action == "new" for action, _, _ in data["bids"] + data["asks"])
            assert {p: a for _, p, a in data["bids"]} == book["bids"]
            assert {p: a for _, p, a in data["asks"]} == book["asks"]
            assert [p for _, p, _ in data["bids"]] == sorted(book["bids"], reverse=True)
            assert [p for _, p, _ in data["asks"]] == sorted(book["asks"])
            nxt = (await recv(ws))["params"]["data"]
            assert nxt == frames[received].payload
            assert nxt["prev_change_id"] == last_change

    with SimulatorThread(recording, rate=100, retime="none") as sim:
        run(client(sim.url))


@pytest.mark.parametrize("capture,instrument", [(DERIBIT_CAPTURE, DERIBIT_INSTRUMENT),
                                                (DERIBIT_GAP_CAPTURE, "BTC-PERPETUAL")])
def test_deribit_grouped_channels_are_the_top_of_the_recorded_book(capture: Path,
                                                                   instrument: str) -> None:
    """Grouped and plain book channels in one request: each grouped notification
    is the complete top-N of the book after one recorded change (the testnet
    perpetual's book is deep enough to cut at 20, the option's at 1)."""
    recording = load_recording([capture])
    frames = recording.deribit[instrument]
    grouped = {f"book.{instrument}.none.{depth}.{interval}": depth
               for depth, interval in ((1, "100ms"), (10, "agg2"), (20, "100ms"))}
    channels = [*grouped, book_channel(instrument)]

    async def client(url: str) -> Dict[str, List[Dict[str, Any]]]:
        got: Dict[str, List[Dict[str, Any]]] = {c: [] for c in channels}
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/subscribe", channels=channels))
            assert (await recv(ws))["result"] == channels
            for note in await drain(ws):
                got[note["params"]["channel"]].append(note["params"]["data"])
        return got

    with SimulatorThread(recording, speed=0, retime="none") as sim:
        got = run(client(sim.url))
    assert got[book_channel(instrument)] == [f.payload for f in frames]
    book: Dict[str, Dict[float, float]] = {"bids": {}, "asks": {}}
    expected: Dict[str, List[Dict[str, Any]]] = {c: [] for c in grouped}
    for frame in frames:
        apply_deribit(book, frame.payload)
        for channel, depth in grouped.items():
            expected[channel].append({
                "timestamp": frame.payload["timestamp"], "instrument_name": instrument,
                "change_id": frame.payload["change_id"],
                "bids": [[p, book["bids"][p]] for p in sorted(book["bids"], reverse=True)[:depth]],
                "asks": [[p, book["asks"][p]] for p in sorted(book["asks"])[:depth]]})
    for channel in grouped:
        assert got[channel] == expected[channel]
    # The cuts happened: depth 1 always, depth 20 on the perpetual's deep book.
    assert max(len(n["bids"]) for n in got[channels[0]]) == 1 < max(len(b) for b in book.values())
    if instrument == "BTC-PERPETUAL":
        assert max(len(n["bids"]) for n in got[channels[2]]) == 20


def test_deribit_grouped_channel_names_are_checked(recording: Recording) -> None:
    async def client(url: str) -> List[Dict[str, Any]]:
        replies = []
        async with connect(url + "/deribit") as ws:
            for i, channel in enumerate((f"book.{DERIBIT_INSTRUMENT}.5.10.100ms",
                                         f"book.{DERIBIT_INSTRUMENT}.none.5.100ms",
                                         f"book.{DERIBIT_INSTRUMENT}.none.10.raw")):
                await send(ws, rpc(i, "public/subscribe", channels=[channel]))
                replies.append(await recv(ws))
        return replies

    with SimulatorThread(recording, speed=0) as sim:
        replies = run(client(sim.url))
    assert [r["error"]["code"] for r in replies] == [-32602] * 3


def test_deribit_raw_needs_auth_and_errors(recording: Recording) -> None:
    async def client(url: str) -> None:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/subscribe",
                               channels=[book_channel(), book_channel(interval="raw")]))
            reply = await recv(ws)
            assert reply["id"] == 1 and "result" not in reply
            assert reply["error"] == {"code": 13778,
                                      "message": "raw_subscriptions_not_available_for_unauthorized"}
            await send(ws, rpc(2, "public/subscribe", channels=[book_channel("BTC-1JAN99-1-C")]))
            error = (await recv(ws))["error"]
            assert error["code"] == -32602 and error["message"] == "Invalid params"
            assert error["data"]["param"] == "channels" and "BTC-1JAN99-1-C" in error["data"]["reason"]
            await send(ws, rpc(3, "public/no_such_method"))
            assert (await recv(ws))["error"]["code"] == -32601
            # None of the failed requests subscribed anything: the next frame is
            # the answer to the next request, not a notification.
            await send(ws, rpc(4, "public/test"))
            assert (await recv(ws))["result"]["version"]
            await send(ws, rpc(5, "public/auth", grant_type="client_credentials",
                               client_id="x", client_secret="y"))
            assert (await recv(ws))["result"]["token_type"] == "bearer"
            raw = book_channel(interval="raw")
            await send(ws, rpc(6, "public/subscribe", channels=[raw]))
            assert (await recv(ws))["result"] == [raw]
            note = await recv(ws)
            assert note["params"]["channel"] == raw

    # Paced, so the client can hang up mid-stream without first draining a flood.
    with SimulatorThread(recording, rate=20, api_keys={"deribit": [("x", "y")]}) as sim:
        run(client(sim.url))


def test_deribit_heartbeat_closes_only_unanswered_connections(recording: Recording) -> None:
    interval = 0.3

    async def silent(url: str) -> float:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/set_heartbeat", interval=interval))
            assert (await recv(ws))["result"] == "ok"
            start = time.monotonic()
            assert (await recv(ws))["params"] == {"type": "test_request"}
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            return time.monotonic() - start

    async def answering(url: str) -> int:
        requests = 0
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/set_heartbeat", interval=0.1))
            assert (await recv(ws))["error"]["data"]["param"] == "interval"
            await send(ws, rpc(2, "public/set_heartbeat", interval=interval))
            assert (await recv(ws))["result"] == "ok"
            deadline = time.monotonic() + 5 * interval
            while time.monotonic() < deadline:
                msg = await recv(ws)
                if msg.get("method") == "heartbeat":
                    assert "id" not in msg
                    requests += 1
                    await send(ws, rpc(100 + requests, "public/test"))
            assert ws.close_code is None
        return requests

    async def both(url: str) -> tuple:
        return await asyncio.gather(silent(url), answering(url))

    with SimulatorThread(recording, min_heartbeat=interval) as sim:
        closed_after, answered = run(both(sim.url))
    assert interval * 0.5 < closed_after < interval * 3
    assert answered >= 3


# --- server and command line ------------------------------------------------------

def test_unknown_path_is_refused(recording: Recording) -> None:
    async def client(url: str) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url + "/kraken"):
                pass
        assert info.value.response.status_code == 404

    with SimulatorThread(recording) as sim:
        run(client(sim.url))


def test_cli_prints_listening_line_and_exits_on_sigterm(tmp_path: Path) -> None:
    send_log = tmp_path / "sent.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sources.simulator", "--capture", str(DERIBIT_CAPTURE),
         "--port", "0", "--speed", "0", "--send-log", str(send_log)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no listening line"
        line = proc.stdout.readline()
        match = re.fullmatch(r"lobstream simulator listening on (ws://127\.0\.0\.1:(\d+))\n", line)
        assert match and int(match.group(2)) > 0

        async def client(url: str) -> int:
            async with connect(url + "/deribit") as ws:
                await send(ws, rpc(1, "public/subscribe", channels=[book_channel()]))
                count = -1  # the reply
                try:
                    async for _ in ws:
                        count += 1
                except ConnectionClosed:
                    pass
                return count

        assert run(client(match.group(1))) == len(load_recording([DERIBIT_CAPTURE])
                                                  .deribit[DERIBIT_INSTRUMENT])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
        assert proc.stdout.read() == ""  # exactly one line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(send_log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["venue"] for r in rows} == {"deribit"}
    assert {r["product"] for r in rows} == {DERIBIT_INSTRUMENT}
    assert all(float(r["t_send_ms"]) > 0 for r in rows)

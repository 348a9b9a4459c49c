"""Exchange times as the simulator sends them (``retime``), over real websockets.

With ``retime="now"`` every exchange time is the recorded one moved by one
offset per venue, fixed at the server's start so the venue's recording starts
then; with ``retime="none"`` times are as recorded. Either way the times made up
on a resubscribe (a generated snapshot) lie within the recorded span, on the same
clock, never months away from the updates around them. Expected values are
computed here from the recording, independently of the simulator's clock code.
"""

from __future__ import annotations

import calendar
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Tuple

import aiohttp
import pytest
from websockets.asyncio.client import connect

from sources.simulator import Recording, SimulatorThread, load_recording
from tests.helpers import recv, run, send

ROOT = Path(__file__).resolve().parent.parent
COINBASE_CAPTURE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT_CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"
EXCHANGE_CAPTURE = ROOT / "recordings" / "coinbase_exchange_level2.jsonl.gz"
MAX_SIZE = 16 * 2**20
COINBASE_PRODUCT = "ETH-USD"
DERIBIT_INSTRUMENT = "ETH-9APR21-1950-C"
EXCHANGE_PRODUCT = "DASH-BTC"
#: Frames each client takes before it resubscribes.
BEFORE_RESUBSCRIBE = 12


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording([COINBASE_CAPTURE, DERIBIT_CAPTURE, EXCHANGE_CAPTURE])


@lru_cache(maxsize=None)
def ns(text: str) -> int:
    """Epoch ns of an RFC 3339 UTC time with up to 9 fraction digits."""
    head, _, fraction = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


def started(recording: Recording, **kw: Any) -> Tuple[SimulatorThread, float, float]:
    before = time.time() * 1000.0
    sim = SimulatorThread(recording, **kw)
    sim.start()
    return sim, before, time.time() * 1000.0


def check_offset(offset: int, retime: str, before: float, after: float, start_ms: float) -> None:
    if retime == "none":
        assert offset == 0
    else:
        assert offset % 1000 == 0 and before - start_ms - 500 <= offset <= after - start_ms + 500


async def resubscribing_client(url: str, path: str, subscribe: Dict[str, Any],
                               unsubscribe: Dict[str, Any], is_data: Any,
                               is_snapshot: Any) -> Tuple[List[Dict[str, Any]], Dict[str, Any],
                                                          Dict[str, Any]]:
    """The data frames before a resubscribe (the recorded snapshot first), the
    generated snapshot, and the first data frame after it."""
    async with connect(url + path, max_size=MAX_SIZE, max_queue=None) as ws:
        await send(ws, subscribe)
        before: List[Dict[str, Any]] = []
        while len(before) < BEFORE_RESUBSCRIBE:
            msg = await recv(ws)
            if is_data(msg):
                before.append(msg)
        await send(ws, unsubscribe)
        await send(ws, subscribe)
        while True:
            msg = await recv(ws)
            if is_data(msg) and is_snapshot(msg):
                break
            if is_data(msg):
                before.append(msg)
        snapshot = msg
        while not is_data(msg := await recv(ws)):
            pass
        return before, snapshot, msg


@pytest.mark.parametrize("retime", ["now", "none"])
def test_coinbase_times_and_resubscribe_snapshot(recording: Recording, retime: str) -> None:
    frames = recording.coinbase["l2_data"][COINBASE_PRODUCT]
    recorded = [ns(f.payload["updates"][0]["event_time"]) for f in frames]
    sub = {"type": "subscribe", "channel": "level2", "product_ids": [COINBASE_PRODUCT]}
    sim, before_ms, after_ms = started(recording, rate=100, retime=retime)
    try:
        sent, snapshot, after = run(resubscribing_client(
            sim.url, "/coinbase", sub, {**sub, "type": "unsubscribe"},
            lambda m: m.get("channel") == "l2_data",
            lambda m: m["events"][0]["type"] == "snapshot"))
        offset = sim.clock("coinbase").offset_ms
    finally:
        sim.stop()
    check_offset(offset, retime, before_ms, after_ms, frames[0].ts)
    shift = offset * 1_000_000
    for i, msg in enumerate(sent):  # every update's event_time moved by the one offset
        got = [ns(u["event_time"]) for u in msg["events"][0]["updates"]]
        want = [ns(u["event_time"]) + shift for u in frames[i].payload["updates"]]
        assert got == want
        # The envelope: the recorded one, moved (the time the server sent it).
        assert ns(msg["timestamp"]) == ns(frames[i].envelope_time) + shift >= got[0]
    stamp = ns(snapshot["timestamp"])
    assert {ns(u["event_time"]) for u in snapshot["events"][0]["updates"]} == {stamp}
    assert stamp == ns(sent[-1]["events"][0]["updates"][0]["event_time"])
    assert recorded[0] + shift <= stamp <= recorded[-1] + shift
    assert stamp <= ns(after["timestamp"])  # the next update is no earlier


@pytest.mark.parametrize("retime", ["now", "none"])
def test_deribit_times_and_resubscribe_snapshot(recording: Recording, retime: str) -> None:
    frames = recording.deribit[DERIBIT_INSTRUMENT]
    channel = f"book.{DERIBIT_INSTRUMENT}.100ms"

    def rpc(method: str) -> Dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"channels": [channel]}}

    sim, before_ms, after_ms = started(recording, rate=100, retime=retime)
    try:
        sent, snapshot, after = run(resubscribing_client(
            sim.url, "/deribit", rpc("public/subscribe"), rpc("public/unsubscribe"),
            lambda m: m.get("method") == "subscription",
            lambda m: "prev_change_id" not in m["params"]["data"]))
        offset = sim.clock("deribit").offset_ms
    finally:
        sim.stop()
    check_offset(offset, retime, before_ms, after_ms, frames[0].ts)
    for i, msg in enumerate(sent):
        assert msg["params"]["data"]["timestamp"] == frames[i].payload["timestamp"] + offset
    stamp = snapshot["params"]["data"]["timestamp"]
    assert stamp == sent[-1]["params"]["data"]["timestamp"]
    assert frames[0].payload["timestamp"] + offset <= stamp <= frames[-1].payload["timestamp"] + offset
    assert stamp <= after["params"]["data"]["timestamp"]


def test_exchange_update_and_heartbeat_times(recording: Recording) -> None:
    frames = recording.coinbase_exchange[EXCHANGE_PRODUCT]
    updates = [f for f in frames if f.payload["type"] == "l2update"]

    async def client(url: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, {"type": "subscribe", "product_ids": [EXCHANGE_PRODUCT],
                            "channels": ["level2_batch", "heartbeat"]})
            data, beats = [], []
            while len(beats) < 2 or len(data) < 20:
                msg = await recv(ws)
                (beats if msg["type"] == "heartbeat" else data).append(msg)
            return data, beats

    sim, before_ms, after_ms = started(recording, rate=20)
    try:
        data, beats = run(client(sim.url))
        offset = sim.clock("coinbase_exchange").offset_ms
    finally:
        sim.stop()
    check_offset(offset, "now", before_ms, after_ms, frames[0].ts)
    shift = offset * 1_000_000
    sent = [m for m in data if m["type"] == "l2update"]
    assert [ns(m["time"]) for m in sent] == [ns(f.payload["time"]) + shift
                                             for f in updates[:len(sent)]]
    span = (ns(updates[0].payload["time"]) + shift - 10**9,
            ns(updates[-1].payload["time"]) + shift + 10**9)
    for beat in beats:  # the connection's exchange clock, not today's wall clock
        assert span[0] <= ns(beat["time"]) <= span[1]
        assert len(beat["time"]) == 27


def test_binance_event_and_snapshot_times_move_by_the_offset() -> None:
    """USD-M: ``E`` and ``T`` of diffs, trades and the REST snapshot, one offset."""
    capture = ROOT / "recordings" / "binance_usdm_ethusdt.jsonl.gz"
    recording = load_recording([capture])
    depth = recording.channels["binance_usdm"]["depth"]["ETHUSDT"]
    trades = recording.channels["binance_usdm"]["trade"]["ETHUSDT"]
    recorded_snapshot = recording.channels["binance_usdm"]["snapshot"]["ETHUSDT"][0].payload

    async def client(url: str, http: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            async with session.get(http + "/fapi/v1/depth?symbol=ETHUSDT&limit=5") as resp:
                snapshot = await resp.json()
        async with connect(url + "/public/stream?streams=ethusdt@depth@0ms/ethusdt@trade",
                           max_queue=None) as ws:
            return [await recv(ws) for _ in range(40)], snapshot

    sim, before_ms, after_ms = started(recording, rate=200)
    try:
        messages, snapshot = run(client(sim.url, sim.http_url))
        offset = sim.clock("binance_usdm").offset_ms
    finally:
        sim.stop()
    check_offset(offset, "now", before_ms, after_ms, depth[0].ts)
    served = {"ethusdt@depth@0ms": [m["data"] for m in messages if "depth" in m["stream"]],
              "ethusdt@trade": [m["data"] for m in messages if "trade" in m["stream"]]}
    for name, frames in (("ethusdt@depth@0ms", depth), ("ethusdt@trade", trades)):
        for got, want in zip(served[name], frames):
            assert got == {**want.payload, "E": want.payload["E"] + offset,
                           "T": want.payload["T"] + offset}
    assert served["ethusdt@trade"]  # both channels were compared
    assert (snapshot["E"], snapshot["T"]) == (recorded_snapshot["E"] + offset,
                                              recorded_snapshot["T"] + offset)

"""Fault injection in the exchange simulator, seen from a raw ``websockets`` client.

Each test asks for one fault and checks that the client observes exactly its
effect (against the recording, which says what an untouched stream would have
been) and that the plan's injection log records it. Positions are 0-based
indexes into the product's recording: ``after=2`` hits the third book frame,
index 2. Waits are bounded, so a fault that hangs a client fails fast.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (ConnectionClosed, ConnectionClosedError, InvalidMessage,
                                   InvalidStatus)

from sources.simulator import (
    Fault,
    FaultPlan,
    FaultRecord,
    Recording,
    SimulatorThread,
    load_recording,
    random_faults,
)
from tests.helpers import run, send

ROOT = Path(__file__).resolve().parent.parent
COINBASE_CAPTURE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT_CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"
MAX_SIZE = 16 * 2**20
#: Its snapshot is 2.5 MB; BTC-USD's is twice that.
COINBASE_PRODUCT = "ETH-USD"
#: Two Deribit options with long, contiguous change chains.
INSTRUMENT = "ETH-9APR21-1950-C"
OTHER_INSTRUMENT = "ETH-30APR21-2240-P"

@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording([COINBASE_CAPTURE, DERIBIT_CAPTURE])


def decoded(raw: Any) -> Any:
    """A frame as JSON, or its raw text when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


async def frames(ws: ClientConnection, n: int, timeout: float = 5.0) -> List[Any]:
    return [decoded(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(n)]


def sub(channel: str, *products: str) -> Dict[str, Any]:
    msg: Dict[str, Any] = {"type": "subscribe", "channel": channel}
    if products:
        msg["product_ids"] = list(products)
    return msg


def rpc_subscribe(request_id: int, *instruments: str) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "public/subscribe",
            "params": {"channels": [f"book.{i}.100ms" for i in instruments]}}


async def coinbase_client(url: str, n: int, product: str = COINBASE_PRODUCT) -> List[Any]:
    """The first ``n`` frames of a ``level2`` subscription (the reply first).
    The queue is unbounded: the replay catches up on the time the snapshot took
    in a burst, and a full queue would stop the client reading the close frame."""
    async with connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None) as ws:
        await send(ws, sub("level2", product))
        return await frames(ws, n)


async def deribit_client(url: str, n: int, *instruments: str) -> List[Any]:
    """The first ``n`` notifications of a book subscription, after its reply."""
    async with connect(url + "/deribit", max_size=MAX_SIZE, max_queue=None) as ws:
        await send(ws, rpc_subscribe(1, *(instruments or (INSTRUMENT,))))
        reply, *notes = await frames(ws, n + 1)
        assert reply["id"] == 1 and "result" in reply
        return notes


def change_ids(recording: Recording, instrument: str = INSTRUMENT) -> List[int]:
    return [f.payload["change_id"] for f in recording.deribit[instrument]]


def chain_breaks(notes: Sequence[Dict[str, Any]]) -> List[int]:
    """change_ids whose prev_change_id is not the change_id received before."""
    last: Dict[str, int] = {}
    breaks = []
    for note in notes:
        data = note["params"]["data"]
        previous = last.get(data["instrument_name"])
        if previous is not None and data.get("prev_change_id") != previous:
            breaks.append(data["change_id"])
        last[data["instrument_name"]] = data["change_id"]
    return breaks


def logged(plan: FaultPlan) -> List[Tuple[Any, ...]]:
    """The injection log without its timestamps."""
    return [tuple(r)[1:] for r in plan.injected]


# --- stream faults: drop, duplicate, swap, gap, chain_break ------------------------

#: spec, recorded indexes the client receives, indexes the log names.
STREAM_FAULTS = [
    ("drop:after=2", [0, 1, 3, 4, 5], [2]),
    ("duplicate:after=2", [0, 1, 2, 2, 3], [2]),
    ("swap:after=2", [0, 1, 3, 2, 4], [2]),
    ("gap:after=2,frames=3", [0, 1, 5, 6], [2, 3, 4]),
]


@pytest.mark.parametrize("spec,received,hit", STREAM_FAULTS, ids=[s[0] for s in STREAM_FAULTS])
def test_coinbase_stream_faults_show_in_sequence_num(recording: Recording, spec: str,
                                                     received: List[int], hit: List[int]) -> None:
    """The reply is sequence_num 0 and recorded frame i is i + 1: stamping precedes
    the fault, so a lost frame leaves its number missing."""
    plan = FaultPlan([Fault.parse(spec)])
    with SimulatorThread(recording, rate=100, faults=plan, retime="none") as sim:
        msgs = run(coinbase_client(sim.url, 1 + len(received)))
    assert [m["sequence_num"] for m in msgs] == [0] + [i + 1 for i in received]
    book = recording.coinbase["l2_data"][COINBASE_PRODUCT]
    assert [m["events"][0] for m in msgs[1:]] == [book[i].payload for i in received]
    kind = spec.split(":")[0]
    assert logged(plan) == [("coinbase", 0, COINBASE_PRODUCT, kind, i + 1) for i in hit]


def test_deribit_chain_break_keeps_the_data_and_breaks_the_link(recording: Recording) -> None:
    """Coinbase has no per-book link: the same fault never fires there."""
    plan = FaultPlan([Fault.parse("chain_break:after=2")])
    with SimulatorThread(recording, rate=100, faults=plan, retime="none") as sim:
        notes = run(deribit_client(sim.url, 4))
        run(coinbase_client(sim.url, 5))
    recorded = [f.payload for f in recording.deribit[INSTRUMENT]]
    data = [n["params"]["data"] for n in notes]
    assert data[2] == {**recorded[2], "prev_change_id": recorded[2]["prev_change_id"] - 1}
    assert [data[i] for i in (0, 1, 3)] == [recorded[i] for i in (0, 1, 3)]
    assert chain_breaks(notes) == [recorded[2]["change_id"]]
    assert logged(plan) == [("deribit", 0, INSTRUMENT, "chain_break", recorded[2]["change_id"])]


@pytest.mark.parametrize("spec,received,hit", STREAM_FAULTS, ids=[s[0] for s in STREAM_FAULTS])
def test_deribit_stream_faults_show_in_change_ids(recording: Recording, spec: str,
                                                  received: List[int], hit: List[int]) -> None:
    plan = FaultPlan([Fault.parse(spec)])
    with SimulatorThread(recording, rate=100, faults=plan) as sim:
        notes = run(deribit_client(sim.url, len(received)))
    ids = change_ids(recording)
    assert [n["params"]["data"]["change_id"] for n in notes] == [ids[i] for i in received]
    if spec.startswith(("drop", "gap")):
        # The client sees the chain break at the first frame after the hole.
        assert chain_breaks(notes) == [ids[hit[-1] + 1]]
    kind = spec.split(":")[0]
    assert logged(plan) == [("deribit", 0, INSTRUMENT, kind, ids[i]) for i in hit]


def test_product_scope_and_every(recording: Recording) -> None:
    """``every=3,count=2`` drops recorded frames 2 and 5 of one instrument only;
    the other instrument's chain, interleaved on the same connection, is intact."""
    plan = FaultPlan([Fault.parse(f"drop:product={INSTRUMENT},every=3,count=2")])
    frames_a, frames_b = recording.deribit[INSTRUMENT], recording.deribit[OTHER_INSTRUMENT]
    with SimulatorThread(recording, speed=0, faults=plan) as sim:
        notes = run(deribit_client(sim.url, len(frames_a) + len(frames_b) - 2,
                                   INSTRUMENT, OTHER_INSTRUMENT))
    got: Dict[str, List[int]] = {INSTRUMENT: [], OTHER_INSTRUMENT: []}
    for note in notes:
        data = note["params"]["data"]
        got[data["instrument_name"]].append(data["change_id"])
    ids = change_ids(recording)
    assert got[INSTRUMENT] == [c for i, c in enumerate(ids) if i not in (2, 5)]
    assert got[OTHER_INSTRUMENT] == change_ids(recording, OTHER_INSTRUMENT)
    assert chain_breaks(notes) == [ids[3], ids[6]]
    assert logged(plan) == [("deribit", 0, INSTRUMENT, "drop", ids[i]) for i in (2, 5)]


# --- connection faults: close, abort, stall, refuse --------------------------------

@pytest.mark.parametrize("code", [1001, 1011])
def test_close_sends_a_close_frame_with_the_code(recording: Recording, code: int) -> None:
    plan = FaultPlan([Fault("close", after=1, code=code, reason="maintenance")])

    async def client(url: str) -> None:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc_subscribe(1, INSTRUMENT))
            notes = (await frames(ws, 3))[1:]
            assert len(notes) == 2  # the frame the fault hit is sent, then the close
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None
            assert (ws.close_code, ws.close_reason) == (code, "maintenance")

    with SimulatorThread(recording, rate=50, faults=plan) as sim:
        run(client(sim.url))
    assert logged(plan) == [("deribit", 0, INSTRUMENT, "close", change_ids(recording)[1])]


def test_abort_drops_the_connection_without_close_frame(recording: Recording) -> None:
    plan = FaultPlan([Fault("abort", after=1)])

    async def client(url: str) -> None:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc_subscribe(1, INSTRUMENT))
            await frames(ws, 3)
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is None  # EOF, no close frame
            assert ws.close_code == 1006

    with SimulatorThread(recording, rate=50, faults=plan) as sim:
        run(client(sim.url))
    assert logged(plan) == [("deribit", 0, INSTRUMENT, "abort", change_ids(recording)[1])]


def test_stall_sends_nothing_then_resumes(recording: Recording) -> None:
    """Connection 0 stalls answering pings, connection 1 without: both go silent
    (heartbeats included) for the duration, only the first answers a ping."""
    duration = 1.0
    plan = FaultPlan([Fault("stall", connection=0, after=3, duration=duration),
                      Fault("stall", connection=1, after=3, duration=duration, pings=False)])

    async def open_subscribed(url: str) -> Tuple[ClientConnection, List[Any]]:
        # Unbounded queue: the client stops reading before it closes.
        ws = await connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None)
        await send(ws, sub("heartbeats"))
        first = await frames(ws, 1)  # handled: the connection has its number
        await send(ws, sub("level2", COINBASE_PRODUCT))
        return ws, first

    async def watch(ws: ClientConnection, msgs: List[Any]) -> Dict[str, Any]:
        while sum(m["channel"] == "l2_data" for m in msgs) < 4:
            msgs += await frames(ws, 1)
        stalled_at = time.monotonic()
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)
        pong_after = time.monotonic() - stalled_at
        nxt = await frames(ws, 1)
        silence = time.monotonic() - stalled_at
        later = await frames(ws, 5)  # and the traffic goes on
        await ws.close()
        return {"pong_after": pong_after, "silence": silence, "after": nxt + later,
                "trigger": [m for m in msgs if m["channel"] == "l2_data"][-1]["sequence_num"]}

    async def both(url: str) -> List[Dict[str, Any]]:
        first = await open_subscribed(url)
        second = await open_subscribed(url)
        return list(await asyncio.gather(watch(*first), watch(*second)))

    with SimulatorThread(recording, rate=20, faults=plan) as sim:
        answering, deaf = run(both(sim.url))
    for result in (answering, deaf):
        assert duration * 0.8 < result["silence"] < duration * 2
        seqs = [m["sequence_num"] for m in result["after"]]
        assert seqs == list(range(result["trigger"] + 1, result["trigger"] + 7))
    assert answering["pong_after"] < duration * 0.5
    assert deaf["pong_after"] > duration * 0.8
    # The two connections stall at the same frame: in either order.
    assert sorted(logged(plan)) == [("coinbase", n, COINBASE_PRODUCT, "stall", r["trigger"])
                                    for n, r in ((0, answering), (1, deaf))]


@pytest.mark.parametrize("mode", ["http", "reset"])
def test_refuse_rejects_handshakes_for_a_while(recording: Recording, mode: str) -> None:
    duration = 1.0
    plan = FaultPlan([Fault("refuse", venue="deribit", duration=duration, mode=mode)])

    async def client(url: str) -> Tuple[int, float]:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc_subscribe(1, INSTRUMENT))
            await frames(ws, 2)  # the first book frame starts the refusal
        started = time.monotonic()
        async with connect(url + "/coinbase"):
            pass  # only Deribit is refused
        refused = 0
        while True:
            try:
                async with connect(url + "/deribit", open_timeout=2):
                    return refused, time.monotonic() - started
            except InvalidStatus as exc:
                assert mode == "http" and exc.response.status_code == 503
            except (OSError, InvalidMessage) as exc:  # reset: no HTTP response at all
                assert mode == "reset", exc
            refused += 1
            await asyncio.sleep(0.1)

    with SimulatorThread(recording, rate=20, faults=plan) as sim:
        refused, waited = run(client(sim.url))
    assert refused >= 3
    assert duration * 0.8 < waited < duration * 2
    assert logged(plan) == [("deribit", None, None, "refuse", None)] * refused


# --- bad frames: malformed, unknown_type, bad_size, oversized -----------------------

def test_malformed_frame_is_not_json(recording: Recording) -> None:
    plan = FaultPlan([Fault("malformed", after=1)])

    async def client(url: str) -> List[Any]:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc_subscribe(1, INSTRUMENT))
            return [await asyncio.wait_for(ws.recv(), 5) for _ in range(5)]

    with SimulatorThread(recording, rate=100, faults=plan) as sim:
        _reply, first, hit, bad, after = run(client(sim.url))
    with pytest.raises(ValueError):
        json.loads(bad)
    assert hit.startswith(bad)  # a truncated copy of the frame it follows
    ids = change_ids(recording)
    assert [orjson.loads(f)["params"]["data"]["change_id"] for f in (first, hit, after)] == ids[:3]
    assert logged(plan) == [("deribit", 0, INSTRUMENT, "malformed", ids[1])]


def test_unknown_type_coinbase_takes_a_sequence_num(recording: Recording) -> None:
    plan = FaultPlan([Fault("unknown_type", after=1)])
    with SimulatorThread(recording, rate=100, faults=plan) as sim:
        msgs = run(coinbase_client(sim.url, 5))
    assert [m["sequence_num"] for m in msgs] == [0, 1, 2, 3, 4]
    assert [m["channel"] for m in msgs] == [
        "subscriptions", "l2_data", "l2_data", "lobstream_unknown", "l2_data"]
    assert msgs[3]["events"] == [{"product_id": COINBASE_PRODUCT}]
    assert logged(plan) == [("coinbase", 0, COINBASE_PRODUCT, "unknown_type", 2)]


def test_unknown_type_deribit_is_an_unknown_method(recording: Recording) -> None:
    plan = FaultPlan([Fault.parse("unknown_type:after=1,name=public/mystery")])
    with SimulatorThread(recording, rate=100, faults=plan) as sim:
        notes = run(deribit_client(sim.url, 4))
    assert [n["method"] for n in notes] == [
        "subscription", "subscription", "public/mystery", "subscription"]
    assert "id" not in notes[2] and notes[2]["params"] == {"instrument_name": INSTRUMENT}
    assert chain_breaks([n for n in notes if n["method"] == "subscription"]) == []
    assert logged(plan) == [("deribit", 0, INSTRUMENT, "unknown_type", change_ids(recording)[1])]


def is_bad(value: str, size: Any) -> bool:
    if value == "negative":
        return float(size) < 0
    if value == "nan":
        return size == "NaN" and math.isnan(float(size))
    try:
        float(size)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("venue", ["coinbase", "deribit"])
@pytest.mark.parametrize("value", ["negative", "nan", "text"])
def test_bad_size_breaks_exactly_one_level(recording: Recording, venue: str, value: str) -> None:
    plan = FaultPlan([Fault("bad_size", after=2, value=value)])
    with SimulatorThread(recording, rate=100, faults=plan) as sim:
        if venue == "coinbase":
            msgs = run(coinbase_client(sim.url, 4))
            sent = [u["new_quantity"] for u in msgs[3]["events"][0]["updates"]]
            recorded = [u["new_quantity"] for u in
                        recording.coinbase["l2_data"][COINBASE_PRODUCT][2].payload["updates"]]
            seq = msgs[3]["sequence_num"]
        else:
            data = run(deribit_client(sim.url, 3))[2]["params"]["data"]
            payload = recording.deribit[INSTRUMENT][2].payload
            sent = [level[2] for level in data["bids"] + data["asks"]]
            recorded = [level[2] for level in payload["bids"] + payload["asks"]]
            seq = data["change_id"]
    changed = [(r, s) for r, s in zip(recorded, sent) if r != s]
    assert len(sent) == len(recorded) and len(changed) == 1
    assert is_bad(value, changed[0][1]), changed
    product = COINBASE_PRODUCT if venue == "coinbase" else INSTRUMENT
    assert logged(plan) == [(venue, 0, product, "bad_size", seq)]


def test_oversized_frame_has_the_size_asked_for(recording: Recording) -> None:
    size = 2 * 2**20
    plan = FaultPlan([Fault.parse("oversized:after=1,size=2M")])

    async def clients(url: str) -> Any:
        async with connect(url + "/deribit", max_size=MAX_SIZE) as ws:
            await send(ws, rpc_subscribe(1, INSTRUMENT))
            big = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)][2]
        # A client with websockets' default max_size (1 MiB) cannot take it.
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc_subscribe(1, INSTRUMENT))
            with pytest.raises(ConnectionClosedError) as info:
                await frames(ws, 4)
            assert info.value.sent is not None and info.value.sent.code == 1009
        return big

    with SimulatorThread(recording, rate=100, faults=plan, retime="none") as sim:
        big = run(clients(sim.url))
    assert len(big) == size
    padded = orjson.loads(big)
    assert set(padded.pop("lobstream_padding")) == {"x"}
    assert padded["params"]["data"] == recording.deribit[INSTRUMENT][1].payload
    seq = change_ids(recording)[1]
    assert logged(plan) == [("deribit", n, INSTRUMENT, "oversized", seq) for n in (0, 1)]


# --- refused subscribes ------------------------------------------------------------

def test_error_refuses_one_coinbase_product(recording: Recording) -> None:
    plan = FaultPlan([Fault("error", venue="coinbase", product="BTC-USD", every=1)])

    async def client(url: str) -> None:
        async with connect(url + "/coinbase", max_size=MAX_SIZE) as ws:
            await send(ws, sub("level2", "BTC-USD"))
            error = (await frames(ws, 1))[0]
            assert error["type"] == "error" and "BTC-USD" in error["message"]
            await send(ws, sub("level2", COINBASE_PRODUCT))
            reply, book = await frames(ws, 2)
            assert reply["events"] == [{"subscriptions": {"level2": [COINBASE_PRODUCT]}}]
            assert book["events"][0]["product_id"] == COINBASE_PRODUCT
            await send(ws, sub("level2", "BTC-USD", COINBASE_PRODUCT))  # every=1: always
            while (msg := (await frames(ws, 1))[0]).get("type") != "error":
                assert msg["channel"] == "l2_data"

    with SimulatorThread(recording, rate=20, faults=plan) as sim:
        run(client(sim.url))
    assert logged(plan) == [("coinbase", 0, "BTC-USD", "error", None)] * 2


def test_error_refuses_one_deribit_instrument_once(recording: Recording) -> None:
    plan = FaultPlan([Fault.parse(f"error:product={INSTRUMENT},code=10066,message=too_many")])

    async def client(url: str) -> None:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc_subscribe(1, INSTRUMENT))
            reply = (await frames(ws, 1))[0]
            assert reply["id"] == 1 and reply["error"] == {"code": 10066, "message": "too_many"}
            await send(ws, rpc_subscribe(2, OTHER_INSTRUMENT))
            reply, note = await frames(ws, 2)
            assert reply["id"] == 2 and "result" in reply
            assert note["params"]["data"]["instrument_name"] == OTHER_INSTRUMENT
            await send(ws, rpc_subscribe(3, INSTRUMENT))  # count defaults to 1
            while "id" not in (msg := (await frames(ws, 1))[0]):
                pass
            assert msg["id"] == 3 and "result" in msg

    with SimulatorThread(recording, rate=20, faults=plan) as sim:
        run(client(sim.url))
    assert logged(plan) == [("deribit", 0, INSTRUMENT, "error", None)]


# --- random faults, plan parsing, command line -------------------------------------

def test_random_faults_repeat_with_the_same_seed(recording: Recording) -> None:
    instruments = sorted(recording.deribit)

    async def client(url: str) -> List[Any]:
        received = []
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc_subscribe(1, *instruments))
            try:
                async for raw in ws:
                    received.append(decoded(raw))
            except ConnectionClosed:
                pass
        return received

    def soak(seed: int) -> Tuple[List[Tuple[Any, ...]], List[Any]]:
        plan = FaultPlan(random_faults(0.2), seed=seed)
        with SimulatorThread(recording, speed=0, faults=plan) as sim:
            received = run(client(sim.url))
        return logged(plan), received

    first, received = soak(7)
    again, _ = soak(7)
    other, _ = soak(8)
    assert first == again and first != other
    kinds = [r[3] for r in first]
    assert len(set(kinds)) >= 5 and len(kinds) > 20
    assert kinds.count("malformed") == sum(isinstance(m, str) for m in received)
    assert kinds.count("unknown_type") == sum(
        isinstance(m, dict) and m.get("method") == "lobstream_unknown" for m in received)


def test_fault_specs_parse_and_validate() -> None:
    fault = Fault.parse("stall:venue=deribit,connection=2,after=5,duration=1.5,pings=no")
    assert fault == Fault("stall", venue="deribit", connection=2, after=5, duration=1.5,
                          pings=False)
    assert Fault.parse("oversized:size=512k").size == 512 * 1024
    assert Fault.parse("drop").limit == 1
    assert Fault.parse("drop:every=10").limit is None
    assert Fault.parse("drop:probability=0.1,count=3").limit == 3
    for bad in ("explode", "drop:frames=2", "gap:frames=0", "close:code=1006",
                "bad_size:value=huge", "error", "drop:after", "drop:colour=red",
                "refuse:mode=maybe", "drop:probability=2", "stale_snapshot:frames=1001",
                "stale_snapshot:product=BTCUSDT", "chain_break:frames=2"):
        with pytest.raises(ValueError):
            Fault.parse(bad)


def test_plans_naming_unknown_venues_are_refused(recording: Recording) -> None:
    with pytest.raises(ValueError, match="kraken"):
        SimulatorThread(recording, faults=FaultPlan([Fault("drop", venue="kraken")]))
    with pytest.raises(ValueError, match="not both"):
        SimulatorThread(recording, faults=FaultPlan(), frame_filters=lambda venue, n: None)


def test_cli_writes_the_fault_log(tmp_path: Path, recording: Recording) -> None:
    fault_log = tmp_path / "faults.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sources.simulator", "--capture", str(DERIBIT_CAPTURE),
         "--port", "0", "--rate", "100", "--fault", "gap:after=1,frames=2",
         "--fault", "duplicate:after=4", "--fault-log", str(fault_log)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no listening line"
        match = re.fullmatch(r"lobstream simulator listening on (ws://\S+)\n",
                             proc.stdout.readline())
        assert match
        notes = run(deribit_client(match.group(1), 4))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ids = change_ids(recording)
    assert [n["params"]["data"]["change_id"] for n in notes] == [ids[0], ids[3], ids[4], ids[4]]
    records = [FaultRecord(**json.loads(line)) for line in fault_log.read_text().splitlines()]
    assert [tuple(r)[1:] for r in records] == [
        ("deribit", 0, INSTRUMENT, "gap", ids[1]), ("deribit", 0, INSTRUMENT, "gap", ids[2]),
        ("deribit", 0, INSTRUMENT, "duplicate", ids[4])]
    assert all(r.t_ms > 1e12 for r in records)


def test_cli_rejects_a_bad_fault() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sources.simulator", "--capture", str(DERIBIT_CAPTURE),
         "--fault", "close:code=99"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "close: code must be" in proc.stderr

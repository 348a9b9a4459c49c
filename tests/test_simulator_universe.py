"""The simulator's instrument universe: cloned books and the listing schedule, seen
by a real websocket and HTTP client, checked against the recording."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import aiohttp
import pytest
from websockets.asyncio.client import connect

from sources.simulator import Listing, Recording, SimulatorThread, load_recording
from tests.helpers import drain, recv, run, send

ROOT = Path(__file__).resolve().parent.parent
DERIBIT_CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"
EXCHANGE_CAPTURE = ROOT / "recordings" / "coinbase_exchange_level2.jsonl.gz"
INSTRUMENTS = "/deribit/api/v2/public/get_instruments"
RECORDED = "ETH-9APR21-1950-C"  # 70 recorded changes
#: In no bundled list and never recorded: listed mid-run, built from its name.
NEW_EXPIRY = "ETH-7MAY21-2500-C"


@pytest.fixture(scope="module")
def deribit() -> Recording:
    return load_recording([DERIBIT_CAPTURE])


def rpc(request_id: int, method: str, **params: Any) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


async def instruments(http_url: str, currency: str, expired: bool = False) -> List[Dict[str, Any]]:
    url = f"{http_url}{INSTRUMENTS}?currency={currency}&kind=option&expired={str(expired).lower()}"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200
            return (await resp.json())["result"]


async def replay_all(url: str, channels: List[str]) -> Tuple[Dict[str, Any], List[Dict[str, Any]],
                                                             Optional[int]]:
    """Subscribe ``channels`` in one request and read until the server closes."""
    async with connect(url + "/deribit", max_queue=None) as ws:
        await send(ws, rpc(1, "public/subscribe", channels=channels))
        reply = await recv(ws)
        return reply, await drain(ws), ws.close_code


def without_name(payload: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "instrument_name"}


def sources_of(recording: Recording, notes: List[Dict[str, Any]]) -> Dict[str, str]:
    """For each instrument notified, the recorded instrument of the same currency
    whose book it was served (its payloads equal, name aside)."""
    got: Dict[str, List[Dict[str, Any]]] = {}
    for note in notes:
        data = note["params"]["data"]
        assert note["params"]["channel"] == f"book.{data['instrument_name']}.100ms"
        got.setdefault(data["instrument_name"], []).append(without_name(data))
    found = {}
    for name, payloads in got.items():
        matches = [source for source, frames in recording.deribit.items()
                   if source.split("-")[0] == name.split("-")[0]
                   and [without_name(f.payload) for f in frames] == payloads]
        assert matches, f"{name} was not served any recorded book of its currency"
        found[name] = matches[0]
    return found


def test_clone_books_serve_200_listed_options_on_recorded_books(deribit: Recording) -> None:
    """200 options chosen by rule from the served lists (the soonest to expire),
    subscribed in one request: each gets a recorded book of its currency under
    its own name, the same one on every run."""
    async def choose(http_url: str) -> List[str]:
        listed = await instruments(http_url, "BTC") + await instruments(http_url, "ETH")
        ordered = sorted(listed, key=lambda i: (i["expiration_timestamp"], i["instrument_name"]))
        return [i["instrument_name"] for i in ordered[:200]]

    with SimulatorThread(deribit, speed=0, retime="none", clone_books=True) as sim:
        chosen = run(choose(sim.http_url))
        channels = [f"book.{name}.100ms" for name in chosen]
        reply, notes, close = run(replay_all(sim.url, channels), timeout=30)
        sizes = sim.stats["deribit"].subscribe_sizes
    assert reply["result"] == channels and close == 1000 and sizes == {200: 1}
    mapping = sources_of(deribit, notes)
    assert set(mapping) == set(chosen)
    assert len(set(mapping.values())) >= 3  # spread over the recorded books
    assert all(mapping[name] == name for name in chosen if name in deribit.deribit)
    with SimulatorThread(deribit, speed=0, retime="none", clone_books=True) as again:
        _, notes, _ = run(replay_all(again.url, channels[:20]))
    assert sources_of(deribit, notes) == {name: mapping[name] for name in chosen[:20]}


def test_without_clone_books_unrecorded_instruments_cannot_be_subscribed(deribit: Recording) -> None:
    async def client(url: str, http_url: str) -> Dict[str, Any]:
        listed = await instruments(http_url, "BTC")
        unrecorded = next(i["instrument_name"] for i in listed
                          if i["instrument_name"] not in deribit.deribit)
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/subscribe", channels=[f"book.{unrecorded}.100ms"]))
            return await recv(ws)

    with SimulatorThread(deribit, speed=0) as sim:
        reply = run(client(sim.url, sim.http_url))
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["param"] == "channels"


def test_clone_books_on_coinbase_exchange() -> None:
    """BTC-USD is listed but was not recorded: it is served the recorded book of
    the recorded product with the same quote currency (SKL-USD), renamed."""
    recording = load_recording([EXCHANGE_CAPTURE])

    async def client(url: str) -> List[Dict[str, Any]]:
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, {"type": "subscribe", "product_ids": ["BTC-USD"],
                            "channels": ["level2_batch"]})
            return await drain(ws)

    with SimulatorThread(recording, speed=0, retime="none", clone_books=True) as sim:
        reply, *book = run(client(sim.url))
    assert reply["channels"] == [{"name": "level2_batch", "product_ids": ["BTC-USD"]}]
    assert {m["product_id"] for m in book} == {"BTC-USD"}
    source = recording.coinbase_exchange["SKL-USD"]
    assert [{**m, "product_id": "SKL-USD"} for m in book] == [f.payload for f in source]


def test_schedule_lists_a_new_expiry_mid_run_and_delists_another(deribit: Recording) -> None:
    listed_at, delisted_at = 2.0, 1.5
    schedule = [Listing("deribit", NEW_EXPIRY, listed_after=listed_at),
                Listing("deribit", RECORDED, delisted_after=delisted_at)]

    async def delisted_stream(url: str) -> Tuple[int, Tuple[Optional[int], Optional[str]]]:
        """Subscribed before the delisting: its data stops, and with nothing else
        subscribed the connection ends as after the recording."""
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/subscribe", channels=[f"book.{RECORDED}.100ms"]))
            assert "result" in await recv(ws)
            return len(await drain(ws)), (ws.close_code, ws.close_reason)

    async def new_expiry(url: str, http_url: str) -> Dict[str, Any]:
        names = {i["instrument_name"] for i in await instruments(http_url, "ETH")}
        assert NEW_EXPIRY not in names and RECORDED in names
        async with connect(url + "/deribit") as ws:
            channel = f"book.{NEW_EXPIRY}.100ms"
            await send(ws, rpc(1, "public/subscribe", channels=[channel]))
            refused = await recv(ws)
            assert refused["error"]["code"] == -32602 and NEW_EXPIRY in \
                refused["error"]["data"]["reason"]
            deadline = time.monotonic() + 15
            while NEW_EXPIRY not in {i["instrument_name"] for i in await instruments(http_url, "ETH")}:
                assert time.monotonic() < deadline, "never listed"
                await asyncio.sleep(0.2)
            await send(ws, rpc(2, "public/subscribe", channels=[channel]))
            assert (await recv(ws))["result"] == [channel]
            first = (await recv(ws))["params"]["data"]
            listed = {i["instrument_name"]: i for i in await instruments(http_url, "ETH")}
            expired = {i["instrument_name"]: i for i in await instruments(http_url, "ETH", True)}
            await send(ws, rpc(3, "public/subscribe", channels=[f"book.{RECORDED}.100ms"]))
            while "id" not in (late := await recv(ws)):
                pass
            return {"first": first, "listed": listed, "expired": expired, "late": late}

    async def both(url: str, http_url: str) -> Tuple[Any, Any]:
        return await asyncio.gather(delisted_stream(url), new_expiry(url, http_url))

    with SimulatorThread(deribit, rate=10, clone_books=True, schedule=schedule) as sim:
        (count, close), seen = run(both(sim.url, sim.http_url), timeout=30)
    frames = len(deribit.deribit[RECORDED])
    assert 0 < count < frames and close == (1000, "end of recording")
    assert seen["first"]["instrument_name"] == NEW_EXPIRY and "prev_change_id" not in seen["first"]
    assert NEW_EXPIRY in seen["listed"] and RECORDED not in seen["listed"]
    new = seen["listed"][NEW_EXPIRY]
    assert (new["strike"], new["option_type"], new["kind"]) == (2500.0, "call", "option")
    assert seen["expired"].keys() == {RECORDED} and seen["expired"][RECORDED]["is_active"] is False
    assert seen["late"]["error"]["code"] == -32602  # delisted: unknown again


def test_a_schedule_naming_nothing_known_fails_at_start(deribit: Recording) -> None:
    sim = SimulatorThread(deribit, schedule=[Listing("coinbase", "NOPE-XYZ", listed_after=1)])
    with pytest.raises(ValueError, match="NOPE-XYZ"):
        sim.start()
    sim.stop()
    for bad in ("deribit", "deribit:X:list=a", "deribit:X:delist=1,list=2", "deribit:X:when=1"):
        with pytest.raises(ValueError):
            Listing.parse(bad)
    assert Listing.parse("deribit:BTC-PERPETUAL:list=1.5,delist=9") == \
        Listing("deribit", "BTC-PERPETUAL", 1.5, 9.0)

"""The real venues' caps in the simulator: concurrent connections, new connections
and client messages per second per IP, channels per subscribe; and the stats
that let a test see them. The sliding windows are checked exactly against a
fake clock; over real websockets the checks do not depend on timing beyond "a
few messages sent back to back arrive within one second"."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from sources.simulator import Limits, Recording, SimulatorStats, SimulatorThread, load_recording
from sources.simulator.limits import ClientLimiter, WeightBudget, parse_limit
from tests.helpers import recv, run, send

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = [ROOT / "recordings" / "deribit_options.jsonl.gz",
            ROOT / "recordings" / "coinbase_exchange_level2.jsonl.gz"]
INSTRUMENT = "ETH-9APR21-1950-C"


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording(CAPTURES)


def rpc(request_id: int, method: str, **params: Any) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limiter_windows_are_exact() -> None:
    clock, stats = FakeClock(), SimulatorStats()
    limiter = ClientLimiter({"v": Limits(max_connections=3, connects_per_second=2,
                                         messages_per_second=3)}, stats, clock)
    assert limiter.admit("v", "a") is None and limiter.admit("v", "a") is None
    assert "at most 2/s" in limiter.admit("v", "a")  # third connect within the second
    assert limiter.admit("v", "b") is None  # per IP
    clock.now += 1.0
    assert limiter.admit("v", "a") is None  # the window slid past the first two
    clock.now += 1.0
    assert "at most 3 at once" in limiter.admit("v", "a")
    limiter.release("v", "a")
    assert limiter.admit("v", "a") is None
    assert [limiter.message("v", "a") for _ in range(5)] == [True, True, True, False, False]
    clock.now += 0.999
    assert not limiter.message("v", "a")
    clock.now += 0.002
    assert limiter.message("v", "a")
    v = stats["v"]
    assert (v.refused_handshakes, v.peak_connections, v.open_connections) == (2, 4, 4)
    assert (v.rate_limited, v.peak_message_rate) == (3, 4)


def test_weight_budget_windows_bans_and_their_doubling() -> None:
    """Fixed windows of 60 s: a request over the budget gets 429 (uncounted) and
    a Retry-After to the window's end; any request before then bans the IP for
    2 windows, the next ban lasts 4; per venue and IP."""
    clock, stats = FakeClock(), SimulatorStats()
    clock.now = 600.0  # the start of a window
    budget = WeightBudget(60.0, stats, clock)
    assert budget.charge("v", "a", 60, 100) == (200, 60, 0.0)
    clock.now += 10.0
    assert budget.charge("v", "a", 50, 100) == (429, 60, 50.0)
    assert budget.charge("v", "b", 5, 100).status == 200  # another IP
    assert budget.charge("w", "a", 5, 100).status == 200  # another venue
    clock.now += 49.0
    assert budget.charge("v", "a", 1, 100) == (418, 60, 120.0)  # it would fit: too late
    clock.now += 119.0
    assert budget.charge("v", "a", 5, 100).status == 418
    clock.now += 1.0
    assert budget.charge("v", "a", 100, 100).status == 200  # a fresh window after the ban
    assert budget.charge("v", "a", 1, 100).status == 429
    assert budget.charge("v", "a", 1, 100) == (418, 100, 240.0)  # the second ban: twice as long
    clock.now += 240.0
    assert budget.charge("v", "a", 40, 100).status == 200  # backing off after 429 is fine:
    assert budget.charge("v", "a", 70, 100).status == 429
    clock.now += 60.0
    assert budget.charge("v", "a", 70, 100).status == 200  # the next window serves it
    v = stats["v"]
    assert (v.rest_weight, v.peak_rest_weight) == (275, 100)  # IP b too
    with pytest.raises(ValueError):
        WeightBudget(0, stats)


def test_limit_specs() -> None:
    assert parse_limit("deribit.max_connections=64") == ("deribit", "max_connections", 64)
    assert parse_limit("coinbase.messages_per_second=off") == ("coinbase", "messages_per_second",
                                                               None)
    for bad in ("deribit=3", "deribit.max=3", "deribit.max_connections=lots"):
        with pytest.raises(ValueError):
            parse_limit(bad)
    with pytest.raises(ValueError, match="whole number"):
        Limits(max_connections=0)
    with pytest.raises(ValueError, match="kraken"):
        SimulatorThread(Recording(), limits={"kraken": {"max_connections": 1}})
    with pytest.raises(ValueError, match="max_sockets"):
        SimulatorThread(Recording(), limits={"deribit": {"max_sockets": 1}})


def test_deribit_refuses_the_33rd_connection_from_one_ip(recording: Recording) -> None:
    async def client(url: str) -> int:
        conns: List[ClientConnection] = []
        refused = 0
        try:
            for _ in range(32):
                conns.append(await connect(url + "/deribit"))
            with pytest.raises(InvalidStatus) as info:
                await connect(url + "/deribit")
            assert info.value.response.status_code == 429
            assert b"at most 32" in info.value.response.body
            refused += 1
            async with connect(url + "/coinbase-exchange"):
                pass  # other venues have their own caps
            await conns.pop().close()
            deadline = time.monotonic() + 10
            while True:  # the slot is free once the server has seen the close
                try:
                    conns.append(await connect(url + "/deribit"))
                    break
                except InvalidStatus:
                    refused += 1
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
        finally:
            await asyncio.gather(*(ws.close() for ws in conns))
        return refused

    with SimulatorThread(recording) as sim:
        refused = run(client(sim.url), timeout=30)
        deribit = sim.stats["deribit"]
    assert deribit.refused_handshakes == refused >= 1
    assert deribit.peak_connections == 32 and deribit.accepted_connections == 33


def test_connects_per_second_cap_answers_429(recording: Recording) -> None:
    async def client(url: str) -> Tuple[int, int]:
        accepted = refused = 0
        for _ in range(4):
            try:
                async with connect(url + "/coinbase-exchange"):
                    accepted += 1
            except InvalidStatus as exc:
                assert exc.response.status_code == 429
                refused += 1
        return accepted, refused

    with SimulatorThread(recording, limits={"coinbase_exchange": {"connects_per_second": 1}}) as sim:
        accepted, refused = run(client(sim.url))
        stats = sim.stats["coinbase_exchange"]
    assert accepted >= 1 and refused >= 1 and stats.refused_handshakes == refused


def test_deribit_subscribe_rate_answers_10028(recording: Recording) -> None:
    async def client(url: str) -> List[Dict[str, Any]]:
        async with connect(url + "/deribit") as ws:
            for i in range(4):  # back to back, within well under a second
                await send(ws, rpc(i, "public/subscribe", channels=[f"book.{INSTRUMENT}.100ms"]))
            replies = []
            while len(replies) < 4:
                msg = await recv(ws)
                if "id" in msg:
                    replies.append(msg)
            return replies

    with SimulatorThread(recording, rate=5,
                         limits={"deribit": {"messages_per_second": 1}}) as sim:
        replies = run(client(sim.url))
        stats = sim.stats["deribit"]
    assert "result" in replies[0]
    limited = [r for r in replies if "error" in r]
    assert limited and all(r["error"] == {"code": 10028, "message": "too_many_requests"}
                           for r in limited)
    assert stats.rate_limited == len(limited) and stats.peak_message_rate >= 2
    assert stats.subscribe_requests == 4 and stats.subscribe_sizes == {1: 4}


def test_coinbase_message_rate_answers_an_error(recording: Recording) -> None:
    async def client(url: str) -> List[Dict[str, Any]]:
        async with connect(url + "/coinbase-exchange") as ws:
            for _ in range(5):
                await send(ws, {"type": "subscribe", "product_ids": ["SKL-USD"],
                                "channels": ["heartbeat"]})
            return [await recv(ws) for _ in range(5)]

    with SimulatorThread(recording, limits={"coinbase_exchange": {"messages_per_second": 2}}) as sim:
        replies = run(client(sim.url))
        stats = sim.stats["coinbase_exchange"]
    errors = [r for r in replies if r["type"] == "error"]
    assert replies[0]["type"] == "subscriptions" and errors
    assert all(r["message"] == "rate limit exceeded" for r in errors)
    assert stats.rate_limited == len(errors)


def test_subscribe_takes_500_channels_and_refuses_501(recording: Recording) -> None:
    async def choose(http_url: str) -> List[str]:
        names: List[str] = []
        async with aiohttp.ClientSession() as session:
            for currency in ("BTC", "ETH"):
                url = f"{http_url}/api/v2/public/get_instruments?currency={currency}&kind=option"
                async with session.get(url) as resp:
                    names += [i["instrument_name"] for i in (await resp.json())["result"]]
        return names[:501]

    async def client(url: str, names: List[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        async with connect(url + "/deribit", max_queue=None) as ws:
            grouped = [f"book.{n}.none.10.100ms" for n in names[:250]]
            channels = grouped + [f"book.{n}.100ms" for n in names[250:500]]
            await send(ws, rpc(1, "public/subscribe", channels=channels))
            accepted = await recv(ws)
            assert accepted["result"] == channels
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(2, "public/subscribe",
                               channels=[f"book.{n}.100ms" for n in names]))
            refused = await recv(ws)
            await send(ws, rpc(3, "public/test"))
            assert (await recv(ws))["id"] == 3  # nothing was subscribed
        return accepted, refused

    with SimulatorThread(recording, rate=5, clone_books=True) as sim:
        names = run(choose(sim.http_url))
        assert len(names) == 501
        accepted, refused = run(client(sim.url, names))
        stats = sim.stats["deribit"]
    assert refused["error"]["code"] == -32602 and "at most 500" in refused["error"]["data"]["reason"]
    assert stats.subscribe_sizes == {500: 1, 501: 1}

"""Fuzzing the simulated venues' request handling over real websockets: whatever a
client sends, the connection survives and still answers a good request.

Requests are drawn near the venues' own shapes (their keys, with values of any
JSON type) so that the checks deep in each handler are reached, not only the
JSON parse.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from sources.simulator import SimulatorThread, load_recording
from tests.helpers import run

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = [ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz",
            ROOT / "recordings" / "deribit_options.jsonl.gz",
            ROOT / "recordings" / "coinbase_exchange_level2.jsonl.gz",
            ROOT / "recordings" / "binance_spot_btcusdt.jsonl.gz"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)


def either(*known: Any) -> st.SearchStrategy[Any]:
    """A known good value or any JSON value."""
    return st.one_of(st.sampled_from(known), json_values)


coinbase = st.fixed_dictionaries({
    "type": either("subscribe", "unsubscribe"),
    "channel": either("level2", "heartbeats", "ticker", "market_trades"),
    "product_ids": st.one_of(st.lists(either("ETH-USD", "DOGE-XYZ"), max_size=3), json_values),
})
exchange = st.fixed_dictionaries({
    "type": either("subscribe", "unsubscribe"),
    "product_ids": st.one_of(st.lists(either("SKL-USD", "BTC-USD"), max_size=3), json_values),
    "channels": st.one_of(st.lists(st.one_of(
        either("level2_batch", "heartbeat", "level2"),
        st.fixed_dictionaries({"name": either("level2_batch", "heartbeat"),
                               "product_ids": json_values})), max_size=3), json_values),
}, optional={"signature": json_values, "key": json_values})
channels = either("book.ETH-9APR21-1950-C.100ms", "book.ETH-9APR21-1950-C.none.10.100ms",
                  "book.ETH-9APR21-1950-C.raw", "book.X.1.2.3", "book..")
deribit = st.fixed_dictionaries({
    "jsonrpc": either("2.0"),
    "id": json_values,
    "method": either("public/subscribe", "public/unsubscribe", "public/get_instruments",
                     "public/set_heartbeat", "public/test", "public/auth"),
    "params": st.one_of(st.fixed_dictionaries({}, optional={
        "channels": st.one_of(st.lists(channels, max_size=3), json_values),
        "currency": either("BTC", "ETH", "any"), "kind": either("option", "future", "any"),
        "expired": either(True, False, "true"), "interval": either(10, 30)}), json_values),
})

binance = st.fixed_dictionaries({
    "method": either("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY",
                     "GET_PROPERTY"),
    "id": either(1, 2**64, -1, "x" * 40, None),
    "params": st.one_of(st.lists(either("btcusdt@trade", "btcusdt@depth@100ms", "btcusdt@depth",
                                        "combined", "btcusdt@kline_1m", "x@y", True),
                                 max_size=3), json_values),
})

#: Per venue: its path, how its requests are drawn, a request known to be good,
#: and how to recognise the answer to it.
VENUES: Dict[str, Any] = {
    "coinbase": ("/coinbase", coinbase,
                 {"type": "subscribe", "channel": "heartbeats"},
                 lambda m: m.get("channel") == "subscriptions"
                 and "heartbeats" in m["events"][0]["subscriptions"]),
    "coinbase_exchange": ("/coinbase-exchange", exchange,
                          {"type": "subscribe", "product_ids": ["NU-GBP"], "channels": ["heartbeat"]},
                          lambda m: m.get("type") == "subscriptions" and any(
                              c["name"] == "heartbeat" and "NU-GBP" in c["product_ids"]
                              for c in m["channels"])),
    "deribit": ("/deribit", deribit,
                {"jsonrpc": "2.0", "id": "probe", "method": "public/test", "params": {}},
                lambda m: m.get("id") == "probe" and "result" in m),
    "binance": ("/binance/ws", binance, {"method": "LIST_SUBSCRIPTIONS", "id": 999999},
                lambda m: m.get("id") == 999999 and "result" in m),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    # Binance closes a connection sending over 5 frames a second; that is tested
    # elsewhere, and here every message must be answered.
    with SimulatorThread(load_recording(CAPTURES), rate=50,
                         limits={"binance": {"connection_messages_per_second": None}}) as running:
        yield running


async def exchange_messages(url: str, messages: List[bytes], probe: Dict[str, Any],
                            answered: Callable[[Dict[str, Any]], bool]) -> None:
    async with connect(url, max_size=2**25, max_queue=None) as ws:
        for message in messages:
            await ws.send(message.decode("utf-8", "replace"))
        await ws.send(orjson.dumps(probe).decode())
        async with asyncio.timeout(10):
            while True:
                msg = orjson.loads(await ws.recv())  # the connection must not close
                if isinstance(msg, dict) and answered(msg):
                    return


def draw_messages(venue: str) -> st.SearchStrategy[List[bytes]]:
    requests = VENUES[venue][1]
    # json.dumps: it writes what orjson will not (integers past 64 bits, NaN).
    raw = st.one_of(requests.map(lambda r: json.dumps(r).encode()),
                    json_values.map(lambda v: json.dumps(v).encode()),
                    st.binary(max_size=20))
    return st.lists(raw, min_size=1, max_size=6)


@pytest.mark.parametrize("venue", list(VENUES))
def test_any_request_leaves_the_connection_answering(sim: SimulatorThread, venue: str) -> None:
    path, _, probe, answered = VENUES[venue]

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(draw_messages(venue))
    def check(messages: List[bytes]) -> None:
        run(exchange_messages(sim.url + path, messages, probe, answered), timeout=20)

    check()

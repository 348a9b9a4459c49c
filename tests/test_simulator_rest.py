"""The simulator's REST APIs, over real HTTP (aiohttp) on the websocket port.

Bodies are checked against the bundled real replies in ``recordings/reference``
(read here independently of the simulator), with their times moved by the
offset the test can bound from the moment it started the server.
"""

from __future__ import annotations

import asyncio
import calendar
import gzip
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import aiohttp
import pytest
from websockets.asyncio.client import connect

from sources.simulator import Fault, FaultPlan, Recording, SimulatorThread, load_recording
from tests.helpers import recv, run, send

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "recordings" / "reference"
COINBASE_CAPTURE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT_CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"
EXCHANGE_CAPTURE = ROOT / "recordings" / "coinbase_exchange_level2.jsonl.gz"
PRODUCTS_PATH = "/coinbase/api/v3/brokerage/market/products"
INSTRUMENTS_PATH = "/deribit/api/v2/public/get_instruments"
#: 2026-08-09T21:05:48Z, when the bundled Advanced Trade reply was recorded.
COINBASE_PRODUCTS_RECORDED_MS = 1786309548000
PERPETUAL_EXPIRY = 32503708800000


def bundled(name: str) -> Any:
    with gzip.open(REFERENCE / name, "rb") as f:
        return json.loads(f.read())


@pytest.fixture(scope="module")
def coinbase_only() -> Recording:
    """No Deribit book recording, so Deribit serves its bundled lists untouched."""
    return load_recording([COINBASE_CAPTURE])


@pytest.fixture(scope="module")
def everything() -> Recording:
    return load_recording([COINBASE_CAPTURE, DERIBIT_CAPTURE, EXCHANGE_CAPTURE])


class Started:
    """A simulator and the wall-clock bounds (epoch ms) of its start."""

    def __init__(self, recording: Recording, **kw: Any) -> None:
        self.sim = SimulatorThread(recording, **kw)

    def __enter__(self) -> "Started":
        self.before = time.time() * 1000.0
        self.sim.start()
        self.after = time.time() * 1000.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.sim.stop()

    def check_offset(self, moved: int, recorded_ms: float) -> None:
        """``moved`` is whole seconds and maps ``recorded_ms`` to the server's start."""
        assert moved % 1000 == 0
        assert self.before - recorded_ms - 500 <= moved <= self.after - recorded_ms + 500


async def fetch(url: str) -> Tuple[int, Dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            return resp.status, dict(resp.headers), await resp.read()


def get(url: str) -> Tuple[int, Dict[str, str], Any]:
    status, headers, body = run(fetch(url))
    decoded = json.loads(body) if headers["Content-Type"] == "application/json" else body.decode()
    return status, headers, decoded


def get_all(urls: List[str]) -> List[Tuple[int, Dict[str, str], bytes]]:
    async def all_of() -> List[Tuple[int, Dict[str, str], bytes]]:
        return list(await asyncio.gather(*(fetch(u) for u in urls)))
    return run(all_of())


# --- Coinbase Advanced Trade --------------------------------------------------------

def test_coinbase_products_equal_the_bundled_reply(coinbase_only: Recording) -> None:
    reply = bundled("coinbase_products.json.gz")
    with SimulatorThread(coinbase_only, retime="none") as sim:
        status, headers, body = get(sim.http_url + PRODUCTS_PATH)
        one = get(sim.http_url + PRODUCTS_PATH + "/ETH-USD")
    assert status == 200 and body == reply
    assert one[0] == 200 and one[2] == next(p for p in reply["products"]
                                            if p["product_id"] == "ETH-USD")


def test_coinbase_products_move_new_at_with_the_clock(coinbase_only: Recording) -> None:
    reply = bundled("coinbase_products.json.gz")["products"]
    with Started(coinbase_only) as started:
        served = get(started.sim.http_url + PRODUCTS_PATH)[2]["products"]
    assert len(served) == len(reply) == 920
    moves = set()
    for recorded, sent in zip(reply, served):
        assert {**sent, "new_at": recorded["new_at"]} == recorded
        moves.add(iso_ms(sent["new_at"]) - iso_ms(recorded["new_at"]))
    (moved,) = moves
    started.check_offset(moved, COINBASE_PRODUCTS_RECORDED_MS)


def test_coinbase_product_filters_and_errors(coinbase_only: Recording) -> None:
    products = bundled("coinbase_products.json.gz")["products"]
    with SimulatorThread(coinbase_only, retime="none") as sim:
        base = sim.http_url + PRODUCTS_PATH
        two = get(base + "?product_ids=ETH-USD&product_ids=BTC-USD")[2]
        page = get(base + "?limit=5&offset=2")[2]
        futures = get(base + "?product_type=FUTURE")[2]
        bad_type = get(base + "?product_type=SWAPS")
        bad_limit = get(base + "?limit=-1")
        unknown = get(base + "/NOPE-USD")
    assert [p["product_id"] for p in two["products"]] == ["BTC-USD", "ETH-USD"]
    assert page["products"] == products[2:7] and page["num_products"] == 5
    assert futures["products"] == []
    for status, _, body in (bad_type, bad_limit, unknown):
        assert status == 400 and body["error"] == "INVALID_ARGUMENT"
        assert body["message"] == body["error_details"]
    assert "SWAPS" in bad_type[2]["message"] and "limit" in bad_limit[2]["message"]
    assert unknown[2]["message"] == "ProductID is invalid"


# --- Coinbase Exchange --------------------------------------------------------------

def test_exchange_products_equal_the_bundled_reply(everything: Recording) -> None:
    reply = bundled("coinbase_exchange_products.json.gz")
    with SimulatorThread(everything) as sim:
        base = sim.http_url + "/coinbase-exchange/products"
        status, _, body = get(base)
        one = get(base + "/SKL-USD")
        missing = get(base + "/NOPE-XYZ")
    assert status == 200 and body == reply
    assert one[2] == next(p for p in reply if p["id"] == "SKL-USD")
    assert missing[0] == 404 and missing[2] == {"message": "NotFound"}


# --- Deribit ------------------------------------------------------------------------

def test_deribit_lists_equal_the_bundled_replies_moved_per_list(coinbase_only: Recording) -> None:
    currencies = ("BTC", "ETH", "SOL", "USDC")
    with Started(coinbase_only) as started:
        base = started.sim.http_url + INSTRUMENTS_PATH
        replies = get_all([f"{base}?currency={c}&expired=false" for c in currencies])
    for currency, (status, _, body) in zip(currencies, replies):
        recorded = bundled(f"deribit_instruments_{currency}.json.gz")
        served = json.loads(body)
        assert status == 200 and served["jsonrpc"] == "2.0" and served["testnet"] is False
        assert served["usDiff"] == served["usOut"] - served["usIn"] >= 0
        assert "id" not in served and len(served["result"]) == len(recorded["result"])
        moves = set()
        for was, sent in zip(recorded["result"], served["result"]):
            times = ("creation_timestamp", "expiration_timestamp")
            assert {k: v for k, v in sent.items() if k not in times} == \
                {k: v for k, v in was.items() if k not in times}
            moves.add(sent["creation_timestamp"] - was["creation_timestamp"])
            if was["expiration_timestamp"] == PERPETUAL_EXPIRY:
                assert sent["expiration_timestamp"] == PERPETUAL_EXPIRY
            else:
                moves.add(sent["expiration_timestamp"] - was["expiration_timestamp"])
        (moved,) = moves  # one offset per list...
        started.check_offset(moved, recorded["usIn"] / 1000.0)  # ...its own


def test_deribit_filters_aliases_and_errors(coinbase_only: Recording) -> None:
    recorded = bundled("deribit_instruments_BTC.json.gz")["result"]
    with SimulatorThread(coinbase_only, retime="none") as sim:
        base = sim.http_url + INSTRUMENTS_PATH
        replies = get_all([
            base + "?currency=BTC&kind=option&expired=false",
            base + "?currency=BTC&kind=future",
            sim.http_url + "/api/v2/public/get_instruments?currency=BTC&kind=future",
            base + "?currency=any&kind=future",
            base + "?currency=BTC&expired=true",
            base + "?currency=DOGE", base + "?currency=BTC&kind=perps",
            base + "?currency=BTC&expired=maybe", base,
        ])
    options, futures, unprefixed, any_futures, expired, *errors = [json.loads(b)
                                                                    for _, _, b in replies]
    assert options["result"] == [i for i in recorded if i["kind"] == "option"]
    assert futures["result"] == [i for i in recorded if i["kind"] == "future"]
    assert unprefixed["result"] == futures["result"]
    assert {i["base_currency"] for i in any_futures["result"]} >= {"BTC", "ETH", "SOL", "UNI"}
    assert all(i["kind"] == "future" for i in any_futures["result"])
    assert expired["result"] == []  # nothing was delisted
    assert [s for s, _, _ in replies[5:]] == [400] * 4
    assert [e["error"]["data"]["param"] for e in errors] == ["currency", "kind", "expired",
                                                             "currency"]
    assert all(e["error"]["code"] == -32602 and e["error"]["message"] == "Invalid params"
               for e in errors)


def test_deribit_recorded_instruments_join_their_currency_list(everything: Recording) -> None:
    """The book recording (2021-04) has instruments the lists (2021-07) lack: they
    are listed, built from their names, on the recording's own clock."""
    eth = bundled("deribit_instruments_ETH.json.gz")["result"]
    listed = {i["instrument_name"] for i in eth}
    missing = sorted(i for i in everything.deribit if i.startswith("ETH-") and i not in listed)
    assert "ETH-9APR21-1950-C" in missing and "ETH-30APR21-2240-P" in missing
    with SimulatorThread(everything) as sim:
        body = get(sim.http_url + INSTRUMENTS_PATH + "?currency=ETH&kind=option")[2]
        offset = sim.clock("deribit").offset_ms
    served = {i["instrument_name"]: i for i in body["result"]}
    assert set(served) == {i["instrument_name"] for i in eth if i["kind"] == "option"} | set(missing)
    weekly, monthly = served["ETH-9APR21-1950-C"], served["ETH-30APR21-2240-P"]
    assert weekly["expiration_timestamp"] == calendar.timegm((2021, 4, 9, 8, 0, 0)) * 1000 + offset
    assert (weekly["strike"], weekly["option_type"], weekly["kind"]) == (1950.0, "call", "option")
    assert (monthly["strike"], monthly["option_type"]) == (2240.0, "put")
    assert (weekly["settlement_period"], monthly["settlement_period"]) == ("week", "month")
    template = next(i for i in served.values() if i["instrument_name"] in listed)
    for field in ("tick_size", "contract_size", "min_trade_amount", "base_currency",
                  "quote_currency"):
        assert weekly[field] == template[field]
    assert weekly["creation_timestamp"] <= weekly["expiration_timestamp"]


def test_deribit_instruments_over_the_websocket_equal_rest(everything: Recording) -> None:
    async def over_ws(url: str) -> Dict[str, Any]:
        async with connect(url + "/ws/api/v2") as ws:
            await send(ws, {"jsonrpc": "2.0", "id": 7, "method": "public/get_instruments",
                            "params": {"currency": "ETH", "kind": "option", "expired": False}})
            return await recv(ws)

    with SimulatorThread(everything) as sim:
        rest = get(sim.http_url + INSTRUMENTS_PATH + "?currency=ETH&kind=option&expired=false")
        ws_reply = run(over_ws(sim.url))
    assert ws_reply["id"] == 7 and ws_reply["result"] == rest[2]["result"]


# --- paths, faults, stats -------------------------------------------------------------

def test_unknown_paths_get_a_one_line_404(coinbase_only: Recording) -> None:
    with SimulatorThread(coinbase_only) as sim:
        venue_miss = get(sim.http_url + "/deribit/api/v2/public/get_order_book")
        miss = get(sim.http_url + "/kraken/0/public/Assets")
        stats = sim.stats["deribit"]
    for status, headers, text in (venue_miss, miss):
        assert status == 404 and headers["Content-Type"].startswith("text/plain")
        assert text.endswith("\n") and text.count("\n") == 1
    assert "get_instruments" in venue_miss[2] and "/coinbase-exchange/products" in miss[2]
    assert (stats.rest_requests, stats.rest_errors) == (1, 1)


def test_rest_faults_answer_429_with_retry_after_and_slow_replies(coinbase_only: Recording) -> None:
    plan = FaultPlan([Fault.parse("http_error:venue=deribit,status=429,retry_after=2"),
                      Fault.parse("http_error:venue=coinbase,status=503,after=1"),
                      Fault("slow_reply", venue="coinbase_exchange", path="/products",
                            duration=0.5)])
    with SimulatorThread(coinbase_only, faults=plan) as sim:
        deribit = [get(sim.http_url + INSTRUMENTS_PATH + "?currency=BTC") for _ in range(2)]
        coinbase = [get(sim.http_url + PRODUCTS_PATH + "?limit=1") for _ in range(2)]
        started = time.monotonic()
        slow = get(sim.http_url + "/coinbase-exchange/products")
        waited = time.monotonic() - started
    (status, headers, body), again = deribit
    assert status == 429 and headers["Retry-After"] == "2"
    assert body["error"] == {"code": 10028, "message": "too_many_requests"}
    assert again[0] == 200 and again[2]["result"]
    assert [c[0] for c in coinbase] == [200, 503]
    assert coinbase[1][2]["error"] == "UNAVAILABLE"
    assert slow[0] == 200 and waited >= 0.5
    assert [tuple(r)[1:] for r in plan.injected] == [
        ("deribit", None, "/api/v2/public/get_instruments", "http_error", None),
        ("coinbase", None, "/api/v3/brokerage/market/products", "http_error", None),
        ("coinbase_exchange", None, "/products", "slow_reply", None)]


def test_rest_fault_specs_are_checked() -> None:
    for bad in ("http_error:status=200", "http_error:connection=1", "slow_reply:product=X",
                "drop:path=/x", "http_error:retry_after=-1"):
        with pytest.raises(ValueError):
            Fault.parse(bad)


def iso_ms(text: str) -> int:
    """Epoch ms of an RFC 3339 UTC time with up to 9 fraction digits."""
    head, _, fraction = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1000 + int((fraction or "0").ljust(9, "0")[:3])

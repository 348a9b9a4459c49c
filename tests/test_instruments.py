"""Instrument model, per-venue parsers and name syntax, on the bundled REST replies
(recordings/reference/, see recordings/PROVENANCE.md) and on fuzzed variants of them."""

from __future__ import annotations

import copy
import gzip
import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sources.instruments.fields import BodyError, SkipLog, Skipped
from sources.instruments.model import (BASE, CONTRACTS, FUTURE, OPTION, PERPETUAL, QUOTE, SPOT,
                                       Instrument)
from sources.venues import get_venue
from sources.venues.base import MAX_NAME
from sources.instruments.venues import APIS, deribit_queries

REFERENCE = Path(__file__).resolve().parent.parent / "recordings" / "reference"
FILES = {
    "coinbase": ["coinbase_products"],
    "coinbase_exchange": ["coinbase_exchange_products"],
    "deribit": [f"deribit_instruments_{c}" for c in ("BTC", "ETH", "SOL", "USDC")],
    "binance": ["binance_exchange_info"],
    "binance_usdm": ["binance_usdm_exchange_info"],
    "binance_coinm": ["binance_coinm_exchange_info"],
}
#: Entries per file, counted in the raw JSON (jq-style), and what each parser must skip.
ENTRIES = {"coinbase_products": 920, "coinbase_exchange_products": 162,
           "deribit_instruments_BTC": 398, "deribit_instruments_ETH": 426,
           "deribit_instruments_SOL": 177, "deribit_instruments_USDC": 16,
           "binance_exchange_info": 1695, "binance_usdm_exchange_info": 122,
           "binance_coinm_exchange_info": 36}


def body(name: str) -> bytes:
    return gzip.decompress((REFERENCE / f"{name}.json.gz").read_bytes())


def parsed(venue: str) -> Dict[str, Instrument]:
    out: Dict[str, Instrument] = {}
    for name in FILES[venue]:
        instruments, skipped = APIS[venue].parse(body(name))
        out.update((i.symbol, i) for i in instruments)
    return out


@pytest.fixture(scope="module")
def every() -> Dict[str, Dict[str, Instrument]]:
    return {venue: parsed(venue) for venue in FILES}


# --- parsers on the real replies ---------------------------------------------------

SYMBOL_KEYS = {"coinbase": "product_id", "coinbase_exchange": "id", "deribit": "instrument_name",
               "binance": "symbol", "binance_usdm": "symbol", "binance_coinm": "symbol"}


@pytest.mark.parametrize("venue,name", [(v, n) for v, ns in FILES.items() for n in ns])
def test_every_real_entry_is_read_or_counted(venue: str, name: str) -> None:
    entries = _entries(orjson.loads(body(name)))
    assert len(entries) == ENTRIES[name]
    instruments, skipped = APIS[venue].parse(body(name))
    assert len(instruments) + skipped.total == ENTRIES[name]
    kept = {i.symbol for i in instruments}
    assert [i.symbol for i in instruments] == \
        [e[SYMBOL_KEYS[venue]] for e in entries if e[SYMBOL_KEYS[venue]] in kept]  # venue's order
    assert all(i.venue == venue for i in instruments)


def test_only_the_unlisted_binance_usdm_symbol_is_skipped() -> None:
    # BTCSTUSDT was PENDING_TRADING with contractType "" in the 2021 reply.
    instruments, skipped = APIS["binance_usdm"].parse(body("binance_usdm_exchange_info"))
    assert dict(skipped.counts) == {"unsupported": 1}
    assert "BTCSTUSDT" in skipped.samples["unsupported"]
    for venue in FILES:
        if venue != "binance_usdm":
            for name in FILES[venue]:
                assert APIS[venue].parse(body(name))[1].total == 0, name


def test_deribit_fields(every: Dict[str, Dict[str, Instrument]]) -> None:
    d = every["deribit"]
    perp = d["BTC-PERPETUAL"]
    assert (perp.kind, perp.base, perp.quote, perp.settle) == (PERPETUAL, "BTC", "USD", "BTC")
    assert (perp.size_unit, perp.inverse, perp.contract_size) == (QUOTE, True, 10.0)
    assert (perp.tick_size, perp.min_size, perp.size_increment) == (0.5, 10.0, 10.0)
    assert perp.expiry_ms is None  # the year-3000 placeholder is not an expiry
    future = d["BTC-24SEP21"]
    assert (future.kind, future.expiry_ms, future.inverse) == (FUTURE, 1632470400000, True)
    option = d["BTC-24SEP21-40000-P"]
    assert (option.kind, option.strike, option.option_type, option.expiry_ms) == \
        (OPTION, 40000.0, "put", 1632470400000)
    assert (option.size_unit, option.inverse, option.quote, option.min_size) == \
        (BASE, False, "BTC", 0.1)
    linear = d["BTC_USDC-PERPETUAL"]
    assert (linear.kind, linear.quote, linear.settle, linear.size_unit, linear.inverse) == \
        (PERPETUAL, "USDC", "USDC", BASE, False)
    assert linear.contract_size == 0.001
    sol = d["SOL-PERPETUAL"]  # 2022 reply: future_type "reversed", settlement_currency SOL
    assert (sol.inverse, sol.size_unit, sol.settle, sol.contract_size) == (True, QUOTE, "SOL", 10.0)
    assert sum(i.kind == OPTION for i in d.values()) == 390 + 418 + 172


def test_binance_fields(every: Dict[str, Dict[str, Instrument]]) -> None:
    spot = every["binance"]["ETHBTC"]
    assert (spot.kind, spot.base, spot.quote, spot.settle) == (SPOT, "ETH", "BTC", "BTC")
    assert (spot.tick_size, spot.size_increment, spot.min_size) == (0.000001, 0.0001, 0.0001)
    assert sum(not i.active for i in every["binance"].values()) == 433  # status BREAK
    usdm = every["binance_usdm"]
    assert (usdm["BTCUSDT"].kind, usdm["BTCUSDT"].expiry_ms) == (PERPETUAL, None)
    assert (usdm["BTCUSDT_210924"].kind, usdm["BTCUSDT_210924"].expiry_ms) == (FUTURE, 1632470400000)
    assert usdm["BTCUSDT"].size_unit == BASE and not usdm["BTCUSDT"].inverse
    coinm = every["binance_coinm"]
    btc = coinm["BTCUSD_PERP"]
    assert (btc.size_unit, btc.contract_size, btc.inverse, btc.settle) == (CONTRACTS, 100.0, True, "BTC")
    assert coinm["ETHUSD_PERP"].contract_size == 10.0
    assert (coinm["BTCUSD_211231"].kind, coinm["BTCUSD_211231"].expiry_ms) == (FUTURE, 1640937600000)


def test_coinbase_fields(every: Dict[str, Dict[str, Instrument]]) -> None:
    at = every["coinbase"]
    btc = at["BTC-USD"]
    assert (btc.kind, btc.base, btc.quote, btc.tick_size, btc.size_increment) == \
        (SPOT, "BTC", "USD", 0.01, 1e-08)
    # volume_24h 2867.54532609 BTC at price 65086.18; the reply's own estimate of the
    # quote volume ("approximate_quote_24h_volume") is 186637571.25.
    assert btc.volume_24h == pytest.approx(2867.54532609 * 65086.18, rel=1e-12)
    assert btc.volume_24h == pytest.approx(186637571.25, rel=1e-9)
    assert at["BAT-BTC"].volume_24h is None  # volume_24h "" in the reply
    assert sorted(s for s, i in at.items() if not i.active) == [
        "DAI-USD", "DAI-USDC", "EOS-USD", "EOS-USDC", "MKR-USD", "MKR-USDC", "RNDR-USD", "RNDR-USDC"]
    ex = every["coinbase_exchange"]["BTC-GBP"]
    assert (ex.tick_size, ex.size_increment, ex.min_size, ex.volume_24h) == (0.01, 1e-08, 0.0001, None)


# --- size conversions, hand-computed from the reference data ------------------------

def test_conversions(every: Dict[str, Dict[str, Instrument]]) -> None:
    d, coinm = every["deribit"], every["binance_coinm"]
    # BTC-PERPETUAL amount is USD: 120 USD at 32,000 USD/BTC is 0.00375 BTC.
    assert d["BTC-PERPETUAL"].base_amount(120, 32_000.0) == pytest.approx(0.00375)
    assert d["BTC-PERPETUAL"].notional(120, 32_000.0) == 120
    # ETH-PERPETUAL: 5 USD at 2,000 is 0.0025 ETH.
    assert d["ETH-PERPETUAL"].base_amount(5, 2_000.0) == pytest.approx(0.0025)
    # BTCUSD_PERP: 3 contracts x 100 USD = 300 USD, at 30,000 that is 0.01 BTC.
    assert coinm["BTCUSD_PERP"].notional(3, 30_000.0) == 300
    assert coinm["BTCUSD_PERP"].base_amount(3, 30_000.0) == pytest.approx(0.01)
    # ETHUSD_PERP: 7 contracts x 10 USD = 70 USD, at 2,000 that is 0.035 ETH.
    assert coinm["ETHUSD_PERP"].notional(7, 2_000.0) == 70
    assert coinm["ETHUSD_PERP"].base_amount(7, 2_000.0) == pytest.approx(0.035)
    # Linear BTC_USDC-PERPETUAL: amount in BTC; 0.002 BTC at 30,000 is 60 USDC.
    assert d["BTC_USDC-PERPETUAL"].base_amount(0.002, 30_000.0) == 0.002
    assert d["BTC_USDC-PERPETUAL"].notional(0.002, 30_000.0) == pytest.approx(60.0)
    # An option's notional is the premium: 0.5 BTC at 0.0125 BTC is 0.00625 BTC.
    assert d["BTC-24SEP21-40000-P"].notional(0.5, 0.0125) == pytest.approx(0.00625)
    assert every["coinbase"]["BTC-USD"].notional(0.5, 65_086.18) == pytest.approx(32_543.09)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="price"):
            d["BTC-PERPETUAL"].base_amount(10, bad)


def test_contracts_of_base_units() -> None:
    # A linear contract counted in contracts of 0.001 BTC each (not listed by any of
    # today's venues, but the unit allows it): 5 contracts are 0.005 BTC.
    inst = Instrument("x", "BTC-X", PERPETUAL, "BTC", "USDT", "USDT", 0.1, 1.0, 1.0,
                      size_unit=CONTRACTS, contract_size=0.001)
    assert inst.base_amount(5, 30_000.0) == pytest.approx(0.005)
    assert inst.notional(5, 30_000.0) == pytest.approx(150.0)


@pytest.mark.parametrize("changes,problem", [
    ({"kind": "swap"}, "kind"),
    ({"tick_size": 0.0}, "tick_size"),
    ({"min_size": math.nan}, "min_size"),
    ({"size_unit": QUOTE}, "inverse"),
    ({"expiry_ms": 1_700_000_000_000}, "expiry"),
    ({"kind": FUTURE}, "expiry"),
    ({"strike": 100.0}, "strike"),
    ({"volume_24h": -1.0}, "volume"),
])
def test_instrument_invariants(changes: Dict[str, Any], problem: str) -> None:
    fields = dict(venue="x", symbol="A-B", kind=PERPETUAL, base="A", quote="B", settle="B",
                  tick_size=0.1, size_increment=1.0, min_size=1.0)
    Instrument(**fields)
    with pytest.raises(ValueError, match=problem):
        Instrument(**{**fields, **changes})


# --- bad input ---------------------------------------------------------------------

def _entries(doc: Any) -> List[Any]:
    return doc if isinstance(doc, list) else doc.get("products") or doc.get("result") \
        or doc.get("symbols")


@pytest.mark.parametrize("venue,name,symbol_key,field_name,value,kind", [
    ("deribit", "deribit_instruments_BTC", "instrument_name", "tick_size", "0.5x", "bad_number"),
    ("deribit", "deribit_instruments_BTC", "instrument_name", "tick_size", 0, "bad_number"),
    ("deribit", "deribit_instruments_BTC", "instrument_name", "contract_size", True, "bad_number"),
    ("deribit", "deribit_instruments_BTC", "instrument_name", "is_active", "yes", "bad_flag"),
    ("deribit", "deribit_instruments_BTC", "instrument_name", "expiration_timestamp", 1.5e12,
     "bad_number"),
    ("deribit", "deribit_instruments_BTC", "instrument_name", "instrument_name", "BTC/../x",
     "bad_name"),
    ("deribit", "deribit_instruments_BTC", "instrument_name", "kind", "future_combo", "unsupported"),
    ("binance", "binance_exchange_info", "symbol", "filters", [], "missing"),
    ("binance", "binance_exchange_info", "symbol", "baseAsset", "e\u0301th", "bad_text"),
    ("binance_coinm", "binance_coinm_exchange_info", "symbol", "contractSize", "-100", "bad_number"),
    ("coinbase", "coinbase_products", "product_id", "price_increment", "NaN", "bad_number"),
    ("coinbase", "coinbase_products", "product_id", "volume_24h", "1e999", "bad_number"),
    ("coinbase", "coinbase_products", "product_id", "product_id", "BTC USD", "bad_name"),
    ("coinbase_exchange", "coinbase_exchange_products", "id", "base_increment", " 0.1", "bad_number"),
])
def test_one_bad_field_skips_one_entry(venue: str, name: str, symbol_key: str, field_name: str,
                                       value: Any, kind: str) -> None:
    doc = orjson.loads(body(name))
    entries = _entries(doc)
    entries[0][field_name] = value
    instruments, skipped = APIS[venue].parse(orjson.dumps(doc))
    assert dict(skipped.counts) == {kind: 1}
    assert len(instruments) == len(entries) - 1
    assert entries[0].get(symbol_key) not in {i.symbol for i in instruments} or field_name == symbol_key


@pytest.mark.parametrize("literal", [b"1e400", b"NaN", b"-Infinity"])
def test_a_number_out_of_double_range_skips_only_its_entry(literal: bytes) -> None:
    raw = body("deribit_instruments_USDC")
    instruments, skipped = APIS["deribit"].parse(raw.replace(b'"tick_size":0.001,',
                                                             b'"tick_size":' + literal + b",", 1))
    assert len(instruments) == 15 and dict(skipped.counts) == {"bad_number": 1}


def test_duplicates_and_non_objects_are_counted() -> None:
    doc = orjson.loads(body("deribit_instruments_USDC"))
    doc["result"] += [doc["result"][0], "junk", None, 7]
    instruments, skipped = APIS["deribit"].parse(orjson.dumps(doc))
    assert len(instruments) == 16
    assert dict(skipped.counts) == {"duplicate": 1, "not_object": 3}


@pytest.mark.parametrize("venue,reply,message", [
    ("deribit", b'{"jsonrpc":"2.0","error":{"code":10028,"message":"too_many_requests"}}',
     "too_many_requests"),
    ("binance", b'{"code":-1003,"msg":"Too much request weight used"}', "Too much request weight"),
    ("coinbase_exchange", b'{"message":"User-Agent header is required."}', "User-Agent"),
    ("coinbase", b'[]', "expected a list under 'products'"),
    ("binance_usdm", b'{"symbols": {}}', "expected a list"),
    ("deribit", b'\x1f\x8b\x08\x00', "not JSON"),
])
def test_a_reply_that_is_no_list_raises_one_line(venue: str, reply: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message) as info:
        APIS[venue].parse(reply)
    assert "\n" not in str(info.value) and str(info.value).startswith(venue)


def test_more_pages_is_reported() -> None:
    doc = orjson.loads(body("coinbase_products"))
    doc["pagination"]["has_next"] = True
    instruments, skipped = APIS["coinbase"].parse(orjson.dumps(doc))
    assert len(instruments) == 920 and dict(skipped.counts) == {"more_pages": 1}


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                  st.floats(allow_nan=False, allow_infinity=False),
                  st.sampled_from(["", "NaN", "inf", "-0", "1e400", "0x10", " 1", "１", "0",
                                   "1_000", "\x00", "a" * 100, "TRADING", "online", "PERPETUAL"]),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                        st.integers(), max_size=2))
_SAMPLES = {venue: [_entries(orjson.loads(body(n))) for n in names] for venue, names in FILES.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue=st.sampled_from(sorted(FILES)), pick=st.integers(0, 10_000),
       edits=st.lists(st.tuples(st.integers(0, 60), st.one_of(st.just(None), _JUNK)),
                      min_size=1, max_size=4))
def test_fuzzed_entries_never_break_the_parser(venue: str, pick: int, edits: List[Any]) -> None:
    """Random fields of real entries replaced by junk or deleted: the parser returns,
    every entry is either a valid instrument or counted, and untouched entries stay."""
    lists = _SAMPLES[venue]
    entries = lists[pick % len(lists)]
    entry = copy.deepcopy(entries[pick % len(entries)])
    keys = sorted(entry)
    for index, value in edits:
        key = keys[index % len(keys)]
        if value is None and index % 2:
            entry.pop(key, None)
        else:
            entry[key] = value
    others = [e for e in entries if e is not entries[pick % len(entries)]][:5]
    doc: Any = {"products": [entry] + others} if venue == "coinbase" else [entry] + others
    if venue == "deribit":
        doc = {"result": doc}
    elif venue.startswith("binance"):
        doc = {"symbols": doc}
    instruments, skipped = APIS[venue].parse(json.dumps(doc).encode())  # ints beyond 64 bits too
    assert len(instruments) + skipped.total == 1 + len(others)
    assert len(instruments) >= len(others) - skipped.counts["duplicate"]
    for inst in instruments:
        assert name_problem(venue, inst.symbol) == ""
        for value in (inst.tick_size, inst.size_increment, inst.min_size, inst.contract_size):
            assert 0 < value < math.inf


@settings(max_examples=200, deadline=None)
@given(venue=st.sampled_from(sorted(FILES)), data=st.binary(max_size=200))
def test_random_bytes_raise_body_error_or_parse(venue: str, data: bytes) -> None:
    try:
        instruments, skipped = APIS[venue].parse(data)
    except BodyError as ex:
        assert "\n" not in str(ex)
    else:
        assert isinstance(skipped, Skipped)


def test_truncated_reply_raises_body_error() -> None:
    raw = body("binance_coinm_exchange_info")
    for cut in (1, len(raw) // 3, len(raw) - 1):
        with pytest.raises(BodyError):
            APIS["binance_coinm"].parse(raw[:cut])


def test_skip_log_logs_each_kind_once(caplog: pytest.LogCaptureFixture) -> None:
    skipped = Skipped()
    skipped.add("bad_number", "'A': tick_size='x' is not a number")
    skipped.add("bad_number", "'B': tick_size='y' is not a number")
    skipped.add("bad_name", "'c d': bad")
    log = SkipLog()
    with caplog.at_level(logging.WARNING, logger="lobstream.instruments"):
        log.report("deribit", skipped)
        log.report("deribit", skipped)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "skipped 2 instrument entries (bad_number); first: 'A'" in lines[1]


# --- names -------------------------------------------------------------------------


def name_problem(venue: str, name: Any) -> str:
    """The venue home's verdict on a product name ("" when it is valid)."""
    return get_venue(venue).check_product(name) or ""

@pytest.mark.parametrize("venue,name", [
    ("coinbase", "BTC-USD"), ("coinbase_exchange", "1INCH-EUR"), ("deribit", "BTC-PERPETUAL"),
    ("deribit", "BTC-25MAR23"), ("deribit", "BTC-6AUG21-40000-C"), ("deribit", "BTC_USDC"),
    ("deribit", "XRP_USDC-30JUN23-0d625-C"), ("deribit", "SOL_USDC-PERPETUAL"),
    ("binance", "BTCUSDT"), ("binance_coinm", "ETHUSD_PERP"), ("binance_usdm", "BTCUSDT_210924"),
])
def test_valid_names(venue: str, name: str) -> None:
    assert name_problem(venue, name) == ""


@pytest.mark.parametrize("venue,name,message", [
    ("coinbase", "BTC/USD", "'/'"), ("coinbase", "../BTC-USD", "'..'"),
    ("coinbase", "BTC-USD ", "blanks"), ("coinbase", "BTC-\x00USD", "control"),
    ("coinbase", "BTC-USD\n", "control"), ("coinbase", "", "empty"),
    ("coinbase", "B" * 30 + "-" + "U" * 40, f"at most {MAX_NAME}"), ("coinbase", "BTCUSD", "BASE-QUOTE"),
    ("coinbase", "btc-usd", "upper-case: BTC-USD"), ("deribit", "BTC-06AUG21", "futures BTC-25MAR23"),
    ("deribit", "BTC-6AUG21-40000", "options"), ("deribit", "BTC-6AUX21", "perpetuals"),
    ("deribit", "BTC-6AUG21-0.5-C", "0d625"), ("deribit", "BTC-PERPETUA", "perpetuals"),
    ("binance", "btcusdt", "upper-case: BTCUSDT"), ("binance", "BTC-USDT", "upper-case symbols"),
    ("binance_coinm", 42, "string"),
])
def test_invalid_names(venue: str, name: Any, message: str) -> None:
    problem = name_problem(venue, name)
    assert message in problem and "\n" not in problem


def test_unknown_venue() -> None:
    with pytest.raises(ValueError, match="unknown venue 'kraken'; valid choices: coinbase"):
        get_venue("kraken")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(FILES)), st.text(max_size=80))
def test_accepted_names_are_path_and_log_safe(venue: str, name: str) -> None:
    if name_problem(venue, name) == "":
        assert 0 < len(name) <= MAX_NAME and "/" not in name and ".." not in name
        assert name.isprintable() and not any(c.isspace() for c in name) and name.isascii()


def test_deribit_queries() -> None:
    assert [q["currency"] for q in deribit_queries([])] == ["BTC", "ETH", "USDC"]
    assert [q["currency"] for q in deribit_queries(["SOL-PERPETUAL", "XRP_USDC-PERPETUAL",
                                                    "BTC-PERPETUAL"])] == ["BTC", "ETH", "USDC", "SOL"]
    assert deribit_queries([], ["ETH"]) == ({"currency": "ETH", "expired": "false"},)
    with pytest.raises(ValueError, match="currency 'e t h'"):
        deribit_queries([], ["e t h"])
    with pytest.raises(ValueError, match="only deribit"):
        APIS["binance"].queries([], ["BTC"])

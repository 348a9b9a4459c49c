"""Selection rules and resolution: validation messages, the bundled instrument lists,
and a hypothesis comparison of ``resolve``/``diff`` with a brute-force reference that
reads the rule tables directly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.instruments.model import FUTURE, OPTION, PERPETUAL, SPOT, Instrument
from sources.instruments.select import diff, parse_rule, parse_rules, resolve
from sources.instruments.venues import APIS

REFERENCE = Path(__file__).resolve().parent.parent / "recordings" / "reference"
DAY = 86_400_000
#: 2021-07-22 22:42:03 UTC, when the BTC and ETH Deribit lists were recorded (usIn).
DERIBIT_NOW = 1626993723161


def raw(name: str) -> Any:
    return json.loads(gzip.decompress((REFERENCE / f"{name}.json.gz").read_bytes()))


@pytest.fixture(scope="module")
def deribit() -> List[Instrument]:
    out: List[Instrument] = []
    for currency in ("BTC", "ETH", "SOL", "USDC"):
        out += APIS["deribit"].parse(gzip.decompress(
            (REFERENCE / f"deribit_instruments_{currency}.json.gz").read_bytes()))[0]
    return out


@pytest.fixture(scope="module")
def coinbase() -> List[Instrument]:
    return APIS["coinbase"].parse(gzip.decompress(
        (REFERENCE / "coinbase_products.json.gz").read_bytes()))[0]


def symbols(instruments: Sequence[Instrument]) -> List[str]:
    return [i.symbol for i in instruments]


# --- rule validation ---------------------------------------------------------------

@pytest.mark.parametrize("venue,rule,message", [
    ("deribit", {"kind": "opt"}, "kind = \"opt\": valid choices for kind: spot, perpetual, future, option"),
    ("coinbase", {"kind": "option"}, "coinbase lists no option instruments; valid choices for kind: spot"),
    ("deribit", {"kind": []}, "expected a kind or a non-empty list"),
    ("deribit", {"colour": "red"}, "unknown key 'colour'; valid keys: kind, base, quote"),
    ("deribit", {}, "selects every instrument of the venue"),
    ("deribit", {"active": False}, "selects every instrument of the venue"),
    ("deribit", {"base": "B TC"}, "base = \"B TC\": expected a currency code"),
    ("deribit", {"base": ["BTC", 1]}, "base = 1: expected a currency code"),
    ("deribit", {"match": "BTC-*\n"}, "expected a glob"),
    ("deribit", {"match": "X" * 65}, "at most 64"),
    ("deribit", {"expires_within": "7 days"}, "expected a duration such as"),
    ("deribit", {"expires_within": 7}, "expected a duration such as"),
    ("deribit", {"expires_within": "0d"}, "expected a duration such as"),
    ("deribit", {"kind": "perpetual", "expires_within": "1d"}, "expires_within needs instruments that expire"),
    ("deribit", {"kind": "future", "option_type": "call"}, "option_type applies to options only"),
    ("deribit", {"option_type": "C"}, "valid choices for option_type: call, put"),
    ("deribit", {"top": 3}, "top and by go together"),
    ("deribit", {"kind": "option", "by": "expiry"}, "top and by go together"),
    ("deribit", {"top": 0, "by": "expiry"}, "expected an integer from 1 to 1000"),
    ("deribit", {"top": 2.0, "by": "expiry"}, "expected an integer from 1 to 1000"),
    ("deribit", {"top": True, "by": "expiry"}, "expected an integer from 1 to 1000"),
    ("deribit", {"top": 2, "by": "size"}, "valid choices for by: volume, expiry"),
    ("deribit", {"top": 2, "by": "volume", "quote": "USD"}, "carries no 24 h volume; rank by volume works on: coinbase"),
    ("coinbase", {"top": 2, "by": "volume"}, "needs exactly one quote"),
    ("coinbase", {"top": 2, "by": "volume", "quote": ["USD", "EUR"]}, "needs exactly one quote"),
    ("coinbase", {"top": 2, "by": "expiry"}, "by = \"expiry\" needs instruments that expire"),
    ("deribit", {"kind": "option", "active": "yes"}, "active = \"yes\": expected true or false"),
    ("deribit", "kind = option", "expected an inline table"),
    ("kraken", {"kind": "spot"}, "unknown venue 'kraken'; valid choices: coinbase"),
])
def test_bad_rules_fail_with_one_line(venue: str, rule: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rule(venue, rule)
    text = str(info.value)
    assert message in text and "\n" not in text
    if venue != "kraken":
        assert text.startswith(f"{venue}: rule ")


def test_rules_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="expected a list of inline tables"):
        parse_rules("deribit", {"kind": "option"})
    assert len(parse_rules("deribit", [{"kind": "option"}, {"match": "BTC-*"}])) == 2


def test_rule_text_is_quoted_safely() -> None:
    with pytest.raises(ValueError) as info:
        parse_rule("deribit", {"match": "\x1b[31m", "\x00": 1})
    assert "\x1b" not in str(info.value) and "\x00" not in str(info.value)


# --- the bundled lists -------------------------------------------------------------

def test_btc_options_expiring_within_7d(deribit: List[Instrument]) -> None:
    rule = parse_rule("deribit", {"kind": "option", "base": "btc", "expires_within": "7d"})
    got = resolve([], [rule], deribit, DERIBIT_NOW)
    expected = sorted(e["instrument_name"] for e in raw("deribit_instruments_BTC")["result"]
                      if e["kind"] == "option" and e["is_active"]
                      and DERIBIT_NOW < e["expiration_timestamp"] <= DERIBIT_NOW + 7 * DAY)
    assert symbols(got) == expected and len(expected) > 20


def test_top_by_volume_on_coinbase(coinbase: List[Instrument]) -> None:
    rule = parse_rule("coinbase", {"top": 10, "by": "volume", "quote": "USD"})
    got = resolve([], [rule], coinbase, 0)
    entries = [e for e in raw("coinbase_products")["products"]
               if e["quote_currency_id"] == "USD" and e["status"] == "online"
               and not e["trading_disabled"] and e["volume_24h"]]
    entries.sort(key=lambda e: -float(e["volume_24h"]) * float(e["price"]))
    assert {i.symbol for i in got} == {e["product_id"] for e in entries[:10]}
    assert symbols(got) == sorted(symbols(got)) and "BTC-USD" in symbols(got)  # by symbol


def test_names_first_then_rules_by_symbol(deribit: List[Instrument]) -> None:
    rules = [parse_rule("deribit", {"kind": "perpetual", "settle": "USDC", "match": "[AB]*"})]
    got = resolve(["ETH-PERPETUAL", "BTC-PERPETUAL", "ETH-PERPETUAL", "BTC_USDC-PERPETUAL"],
                  rules, deribit, DERIBIT_NOW)
    assert symbols(got) == ["ETH-PERPETUAL", "BTC-PERPETUAL", "BTC_USDC-PERPETUAL",
                            "ADA_USDC-PERPETUAL", "ALGO_USDC-PERPETUAL", "AVAX_USDC-PERPETUAL",
                            "BCH_USDC-PERPETUAL"]


def test_unknown_names(deribit: List[Instrument]) -> None:
    with pytest.raises(ValueError) as info:
        resolve(["BTC-PERPETUA"], [], deribit, DERIBIT_NOW)
    assert str(info.value).startswith(
        "deribit: unknown product 'BTC-PERPETUA'; did you mean BTC-PERPETUAL")
    with pytest.raises(ValueError, match=r"did you mean ETH-PERPETUAL.*also unknown: 'NOPE'"):
        resolve(["eth-perpetual", "NOPE", "BTC-PERPETUAL"], [], deribit, DERIBIT_NOW)
    with pytest.raises(ValueError, match="^deribit: unknown product 'X': the venue listed no"):
        resolve(["X"], [], [], DERIBIT_NOW, venue="deribit")
    # While running, a name the venue no longer lists is dropped instead.
    assert symbols(resolve(["BTC-PERPETUA", "BTC-PERPETUAL"], [], deribit, DERIBIT_NOW,
                           strict=False)) == ["BTC-PERPETUAL"]


def test_expired_and_inactive(coinbase: List[Instrument], deribit: List[Instrument]) -> None:
    assert resolve(["BTC-23JUL21"], [], deribit, DERIBIT_NOW) != []
    assert resolve(["BTC-23JUL21"], [], deribit, 1627027200000) == []  # at its expiry
    assert resolve(["DAI-USD", "BTC-USD"], [], coinbase, 0) == [
        i for i in coinbase if i.symbol == "BTC-USD"]  # DAI-USD is delisted
    every_dai = parse_rule("coinbase", {"base": "DAI", "active": False})
    assert symbols(resolve([], [every_dai], coinbase, 0)) == ["DAI-USD", "DAI-USDC"]
    assert resolve([], [parse_rule("coinbase", {"base": "DAI"})], coinbase, 0) == []


def test_re_resolution_follows_new_expiries(deribit: List[Instrument]) -> None:
    rules = [parse_rule("deribit", {"kind": "future", "base": "BTC", "top": 2, "by": "expiry"})]
    before = resolve(["BTC-PERPETUAL"], rules, deribit, DERIBIT_NOW)
    assert symbols(before) == ["BTC-PERPETUAL", "BTC-23JUL21", "BTC-30JUL21"]
    after = resolve(["BTC-PERPETUAL"], rules, deribit, DERIBIT_NOW + 2 * DAY)
    assert symbols(after) == ["BTC-PERPETUAL", "BTC-27AUG21", "BTC-30JUL21"]
    changes = diff(before, after)
    assert symbols(changes.subscribe) == ["BTC-27AUG21"]
    assert symbols(changes.unsubscribe) == ["BTC-23JUL21"]
    assert changes.changed == []


def test_diff_reports_changed_details(coinbase: List[Instrument]) -> None:
    btc = next(i for i in coinbase if i.symbol == "BTC-USD")
    halted = Instrument(**{**{f: getattr(btc, f) for f in btc.__dataclass_fields__}, "active": False})
    assert diff([btc], [halted]).changed == [halted]


# --- resolve against a brute-force reference ---------------------------------------

NOW = 1_700_000_000_000
HALF_DAY = DAY // 2
_CODES = ["BTC", "ETH", "USD"]


@st.composite
def instrument_lists(draw: Any, venue: str) -> List[Instrument]:
    names = draw(st.lists(st.text("AB-C", min_size=1, max_size=4), unique=True, min_size=1,
                          max_size=12))
    out = []
    for name in names:
        kind = SPOT if venue == "coinbase" else draw(st.sampled_from([SPOT, PERPETUAL, FUTURE, OPTION]))
        # Expiries and "now" on a 12-hour grid, so ties and exact window edges happen.
        expiry = NOW + draw(st.integers(-2, 8)) * HALF_DAY if kind in (FUTURE, OPTION) else None
        option = kind == OPTION
        out.append(Instrument(
            venue, name, kind, draw(st.sampled_from(_CODES)), draw(st.sampled_from(_CODES[:2])),
            draw(st.sampled_from(_CODES)), 0.5, 1.0, 1.0, expiry_ms=expiry,
            strike=draw(st.sampled_from([100.0, 200.0])) if option else None,
            option_type=draw(st.sampled_from(["call", "put"])) if option else None,
            active=draw(st.sampled_from([True, True, True, False])),
            volume_24h=draw(st.sampled_from([None, 0.0, 1.0, 5.0, 5.0, 9.5]))))
    return out


def _one_or_list(values: Sequence[str]) -> Any:
    return st.one_of(st.sampled_from(values), st.lists(st.sampled_from(values), min_size=1, max_size=2))


@st.composite
def rule_tables(draw: Any, venue: str) -> Dict[str, Any]:
    values = {"kind": _one_or_list(APIS[venue].kinds), "base": _one_or_list(["btc", "ETH"]),
              "quote": _one_or_list(["USD", "BTC"]), "settle": _one_or_list(["USD"]),
              "match": _one_or_list(["A*", "*-?", "?", "B*C", "*"]),
              "option_type": _one_or_list(["call", "put"]),
              "expires_within": st.sampled_from(["1d", "36h", "2w"]), "active": st.booleans()}
    keys = draw(st.sets(st.sampled_from(sorted(values)), max_size=3))
    table = {key: draw(values[key]) for key in sorted(keys)}
    if draw(st.booleans()):
        table["top"] = draw(st.integers(1, 4))
        table["by"] = "volume" if venue == "coinbase" else "expiry"
        if venue == "coinbase":
            table["quote"] = draw(st.sampled_from(["USD", "BTC"]))
    return table


def _glob(pattern: str, text: str) -> bool:
    """``*`` and ``?`` only, by recursion: independent of fnmatch."""
    if not pattern:
        return not text
    if pattern[0] == "*":
        return any(_glob(pattern[1:], text[i:]) for i in range(len(text) + 1))
    return bool(text) and (pattern[0] in ("?", text[0])) and _glob(pattern[1:], text[1:])


def _listed(table: Dict[str, Any], key: str) -> Optional[List[str]]:
    value = table.get(key)
    return None if value is None else [value] if isinstance(value, str) else list(value)


def reference_rule(table: Dict[str, Any], instruments: List[Instrument], now: int) -> Set[str]:
    def passes(i: Instrument) -> bool:
        if i.expiry_ms is not None and i.expiry_ms <= now:
            return False
        if table.get("active", True) and not i.active:
            return False
        for key in ("kind", "base", "quote", "settle", "option_type"):
            wanted = _listed(table, key)
            if wanted is not None and getattr(i, key) not in [w.upper() if key in ("base", "quote", "settle")
                                                              else w for w in wanted]:
                return False
        if "match" in table and not any(_glob(p, i.symbol) for p in _listed(table, "match")):
            return False
        if "expires_within" in table:
            n, unit = int(table["expires_within"][:-1]), table["expires_within"][-1]
            span = n * {"h": 3_600_000, "d": DAY, "w": 7 * DAY}[unit]
            if i.expiry_ms is None or i.expiry_ms > now + span:
                return False
        return True

    picked = [i for i in instruments if passes(i)]
    if "top" not in table:
        return {i.symbol for i in picked}
    attr = "volume_24h" if table["by"] == "volume" else "expiry_ms"
    ranked = [i for i in picked if getattr(i, attr) is not None]
    sign = -1 if table["by"] == "volume" else 1

    def beats(j: Instrument, i: Instrument) -> bool:
        a, b = sign * getattr(j, attr), sign * getattr(i, attr)
        return a < b or (a == b and j.symbol < i.symbol)
    return {i.symbol for i in ranked if sum(beats(j, i) for j in ranked) < table["top"]}


def reference(names: List[str], tables: List[Dict[str, Any]], instruments: List[Instrument],
              now: int) -> List[str]:
    by_symbol = {i.symbol: i for i in instruments}
    named: List[str] = []
    for n in names:
        i = by_symbol[n]
        if n not in named and i.active and (i.expiry_ms is None or i.expiry_ms > now):
            named.append(n)
    chosen: Set[str] = set()
    for table in tables:
        chosen |= reference_rule(table, instruments, now)
    return named + sorted(chosen - set(named))


def _valid(venue: str, tables: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The tables ``parse_rule`` accepts (the strategy also draws contradictory ones,
    such as option_type without options, which the validation tests cover)."""
    valid = []
    for table in tables:
        try:
            parse_rule(venue, table)
        except ValueError:
            continue
        valid.append(table)
    return valid


@pytest.mark.parametrize("venue", ["deribit", "coinbase"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_resolve_matches_brute_force(data: Any, venue: str) -> None:
    instruments = data.draw(instrument_lists(venue))
    tables = _valid(venue, data.draw(st.lists(rule_tables(venue), min_size=1, max_size=3)))
    rules = [parse_rule(venue, t) for t in tables]
    names = data.draw(st.lists(st.sampled_from([i.symbol for i in instruments]), max_size=4)) \
        if instruments else []
    now = NOW + data.draw(st.integers(0, 2)) * HALF_DAY
    got = symbols(resolve(names, rules, instruments, now))
    assert got == reference(names, tables, instruments, now)
    later = symbols(resolve(names, rules, instruments, now + DAY))
    changes = diff(resolve(names, rules, instruments, now),
                   resolve(names, rules, instruments, now + DAY))
    assert (set(got) - set(symbols(changes.unsubscribe))) | set(symbols(changes.subscribe)) == set(later)
    assert not set(symbols(changes.subscribe)) & set(got)


def test_brute_force_reference_is_not_trivial() -> None:
    """The reference and the rule strategy do select things (guards the property test)."""
    insts = [Instrument("deribit", "A-B", OPTION, "BTC", "USD", "USD", 0.5, 1.0, 1.0,
                        expiry_ms=NOW + DAY, strike=100.0, option_type="call"),
             Instrument("deribit", "A-C", FUTURE, "BTC", "USD", "USD", 0.5, 1.0, 1.0,
                        expiry_ms=NOW + 3 * DAY)]
    table = {"base": "btc", "expires_within": "36h", "match": "A*"}
    assert reference_rule(table, insts, NOW) == {"A-B"}
    assert symbols(resolve([], [parse_rule("deribit", table)], insts, NOW)) == ["A-B"]

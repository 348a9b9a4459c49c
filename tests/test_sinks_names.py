"""File names for (venue, product): safe, deterministic, collision-free, capped.

Collision-freedom is checked three ways: decoding every uncut name gives back its
pair (so the mapping is injective), a brute-force pass over every pair of short
strings from the troublesome characters, and distinctness of generated lists of
pairs that include over-long ones."""

import itertools
import re

import pytest
from hypothesis import given, settings, strategies as st

from sinks.names import MAX_STEM, file_name, parse_name

SAFE = re.compile(r"[A-Za-z0-9._%~-]+\.jsonl")
CUT = re.compile(r".*~[0-9a-f]{16}\.jsonl")

#: Text from exchanges and configs: any code point, surrogates included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=120)
#: Short strings over the characters that decide collisions.
tricky = st.text("_aA.-%/5F~", max_size=6)


@pytest.mark.parametrize("venue, product, name", [
    # real names are untouched
    ("coinbase", "BTC-USD", "coinbase_BTC-USD.jsonl"),
    ("coinbase_exchange", "ETH-USD", "coinbase_exchange_ETH-USD.jsonl"),
    ("deribit", "BTC-25MAR22-400000-C", "deribit_BTC-25MAR22-400000-C.jsonl"),
    ("deribit", "BTC_USDC-PERPETUAL", "deribit_BTC_USDC-PERPETUAL.jsonl"),
    ("binance_coinm", "BTCUSD_PERP", "binance_coinm_BTCUSD_PERP.jsonl"),
    ("binance_usdm", "ETHUSDT_240927", "binance_usdm_ETHUSDT_240927.jsonl"),
    # odd ones are escaped
    ("coinbase", "BTC/USD", "coinbase_BTC%2FUSD.jsonl"),
    ("coinbase", "..", "coinbase_...jsonl"),
    ("coinbase", "a\x00b\n", "coinbase_a%00b%0A.jsonl"),
    ("coinbase", "€", "coinbase_%E2%82%AC.jsonl"),
    ("coinbase", "a\ud800", "coinbase_a%ED%A0%80.jsonl"),
    (".hidden", "X", "%2Ehidden_X.jsonl"),
    ("coinbase", None, "coinbase_None.jsonl"),
    # the one product rule beyond escaping: an "_" that a venue name could own
    ("coinbase", "exchange_X", "coinbase_exchange%5FX.jsonl"),
    ("coinbase_exchange", "X", "coinbase_exchange_X.jsonl"),
    ("a", "b-c_d", "a_b-c_d.jsonl"),
])
def test_names(venue, product, name):
    assert file_name(venue, product) == name


def test_over_long_names_are_cut_with_a_hash():
    long = "X" * 300
    name = file_name("coinbase", long)
    assert CUT.fullmatch(name) and len(name) == MAX_STEM + len(".jsonl")
    assert name.startswith("coinbase_XXXX")
    assert file_name("coinbase", long[:-1] + "Y") != name
    assert file_name("coinbase", long) == name  # deterministic
    # an escape is never split by the cut
    for n in range(100, 140):
        stem = file_name("v", "€" * n)[:-len(".jsonl")]
        assert re.fullmatch(r"v_(%[0-9A-F]{2})*(~[0-9a-f]{16})?", stem), stem
    with pytest.raises(ValueError):
        parse_name(name)


@settings(max_examples=500, deadline=None)
@given(any_text, any_text)
def test_names_are_safe_and_decode_to_their_pair(venue, product):
    name = file_name(venue, product)
    assert SAFE.fullmatch(name), name
    assert not name.startswith((".", "~")) and len(name.encode()) <= MAX_STEM + len(".jsonl")
    if "~" not in name:
        assert parse_name(name) == (venue, product)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(tricky, any_text), st.one_of(tricky, any_text,
                                                                st.text("X_", min_size=118))),
                unique=True, max_size=40))
def test_distinct_pairs_get_distinct_names(pairs):
    names = [file_name(v, p) for v, p in pairs]
    assert len(set(names)) == len(names)


def test_brute_force_no_collisions_over_short_tricky_strings():
    alphabet = "_aA.-%"
    words = [""] + ["".join(w) for n in range(1, 4) for w in itertools.product(alphabet, repeat=n)]
    seen = {}
    for venue in words:
        for product in words:
            name = file_name(venue, product)
            assert seen.setdefault(name, (venue, product)) == (venue, product), name
    assert len(seen) == len(words) ** 2


def test_parse_name_rejects_names_it_would_not_write():
    for name in ("coinbase.jsonl", "coinbase_a%2.jsonl", "coinbase_%2f.jsonl",
                 "coinbase_exchange_X.txt", "Coinbase_X.jsonl", "coinbase_%41.jsonl", "coinbase_a_b~.jsonl"):
        with pytest.raises(ValueError):
            parse_name(name)
    assert parse_name("coinbase_exchange_X.jsonl") == ("coinbase_exchange", "X")
    assert parse_name("coinbase_a_b.jsonl") == ("coinbase_a", "b")
    assert parse_name("coinbase_exchange%5FX.jsonl") == ("coinbase", "exchange_X")

"""summarize / order_flow_imbalance / top_of_book against hand-computed values."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.book import OrderBook
from state.events import SNAPSHOT, UPDATE, BookEvent
from state.metrics import EMPTY_TOP, SUMMARY_FIELDS, order_flow_imbalance, summarize, top_of_book


def event(kind=UPDATE, seq=7):
    return BookEvent(kind, "venue", "BTC-USD", 1.5, 2.5, seq, None, [], [])


def book_of(bids, asks):
    book = OrderBook()
    book.replace(bids, asks)
    return book


# bids 100 x 3, 99 x 2, 98 x 5 ; asks 101 x 1, 102 x 3, 103 x 6, 104 x 2
BIDS = [(100.0, 3.0), (99.0, 2.0), (98.0, 5.0)]
ASKS = [(101.0, 1.0), (102.0, 3.0), (103.0, 6.0), (104.0, 2.0)]


# ------------------------------------------------------------------------- top_of_book


def test_top_of_book_both_sides():
    assert top_of_book(book_of(BIDS, ASKS)) == (100.0, 3.0, 101.0, 1.0)


def test_top_of_book_missing_sides():
    assert top_of_book(book_of(BIDS, [])) == (100.0, 3.0, None, None)
    assert top_of_book(book_of([], ASKS)) == (None, None, 101.0, 1.0)
    assert top_of_book(OrderBook()) == EMPTY_TOP == (None, None, None, None)


# --------------------------------------------------------------------------- summarize


def test_summary_of_small_book():
    book = book_of(BIDS, ASKS)
    s = summarize(book, event(), None, top_of_book(book), 2)
    assert tuple(s) == SUMMARY_FIELDS
    assert s["type"] == "summary"
    assert (s["venue"], s["product"], s["ts_exchange"], s["ts_recv"], s["seq"]) == (
        "venue", "BTC-USD", 1.5, 2.5, 7)
    assert (s["bid_px"], s["bid_sz"], s["ask_px"], s["ask_sz"]) == (100.0, 3.0, 101.0, 1.0)
    # spread = 101 - 100 = 1 ; mid = (100 + 101) / 2 = 100.5
    assert s["spread"] == 1.0
    assert s["mid"] == 100.5
    # spread_bps = 1 / 100.5 * 1e4 = 99.50248756...
    assert s["spread_bps"] == pytest.approx(99.50248756218906, rel=1e-12)
    # microprice = (100*1 + 101*3) / (3 + 1) = 403 / 4 = 100.75
    assert s["microprice"] == 100.75
    # imbalance = (3 - 1) / (3 + 1) = 0.5
    assert s["imbalance"] == 0.5
    # depth 2: Vb = 3 + 2 = 5, Va = 1 + 3 = 4 -> (5 - 4) / 9 = 1/9
    assert s["depth_imbalance"] == pytest.approx(1 / 9, rel=1e-12)
    assert s["ofi"] is None  # before=None (snapshot)
    assert s["bid_levels"] == 3
    assert s["ask_levels"] == 4


@pytest.mark.parametrize(
    "depth_n, expected",
    [
        # N=1: Vb=3, Va=1 -> 2/4 = 0.5 (same as top imbalance)
        (1, 0.5),
        # N=3: Vb = 3+2+5 = 10, Va = 1+3+6 = 10 -> 0
        (3, 0.0),
        # N=10 (> book): Vb = 10, Va = 1+3+6+2 = 12 -> -2/22 = -1/11
        (10, -1 / 11),
    ],
)
def test_depth_imbalance_for_various_n(depth_n, expected):
    book = book_of(BIDS, ASKS)
    s = summarize(book, event(), None, top_of_book(book), depth_n)
    assert s["depth_imbalance"] == pytest.approx(expected, rel=1e-12, abs=1e-15)


TWO_SIDED = ("spread", "spread_bps", "mid", "microprice", "imbalance", "depth_imbalance", "ofi")


@pytest.mark.parametrize(
    "bids, asks, top, levels",
    [
        (BIDS, [], (100.0, 3.0, None, None), (3, 0)),
        ([], ASKS, (None, None, 101.0, 1.0), (0, 4)),
        ([], [], (None, None, None, None), (0, 0)),
    ],
    ids=["no-asks", "no-bids", "empty"],
)
def test_one_sided_or_empty_book_gives_none(bids, asks, top, levels):
    book = book_of(bids, asks)
    before = (100.0, 3.0, 101.0, 1.0)  # a real before: OFI must still be None
    s = summarize(book, event(), before, top_of_book(book), 5)
    for field in TWO_SIDED:
        assert s[field] is None, field
    assert (s["bid_px"], s["bid_sz"], s["ask_px"], s["ask_sz"]) == top
    assert (s["bid_levels"], s["ask_levels"]) == levels


def test_summary_ofi_uses_before():
    book = book_of(BIDS, ASKS)
    before = (100.0, 5.0, 101.0, 1.0)
    s = summarize(book, event(), before, top_of_book(book), 5)
    # bid same price: +3 - 5 ; ask same price: -1 + 1 -> -2
    assert s["ofi"] == -2.0


# --------------------------------------------------------------------------------- OFI

BEFORE = (100.0, 5.0, 101.0, 4.0)


@pytest.mark.parametrize(
    "after, expected",
    [
        # bid up: +qb'=2 ; ask unchanged: -qa'=4 +qa=4 -> 2
        ((100.5, 2.0, 101.0, 4.0), 2.0),
        # bid same price 5->7: +7 -5 ; ask unchanged 0 -> 2
        ((100.0, 7.0, 101.0, 4.0), 2.0),
        # bid same price 5->1: +1 -5 -> -4
        ((100.0, 1.0, 101.0, 4.0), -4.0),
        # bid down: -qb=5 ; ask 0 -> -5
        ((99.5, 6.0, 101.0, 4.0), -5.0),
        # ask down: bid 0 ; -qa'=3 -> -3
        ((100.0, 5.0, 100.5, 3.0), -3.0),
        # ask up: bid 0 ; +qa=4 -> 4
        ((100.0, 5.0, 101.5, 2.0), 4.0),
        # ask same price 4->1: -1 +4 -> 3
        ((100.0, 5.0, 101.0, 1.0), 3.0),
        # both: bid up +2 ; ask down -3 -> -1
        ((100.5, 2.0, 100.75, 3.0), -1.0),
        # both away: bid down -5 ; ask up +4 -> -1
        ((99.0, 9.0, 102.0, 9.0), -1.0),
        # nothing changed: +5 -5 -4 +4 -> 0
        (BEFORE, 0.0),
    ],
    ids=["bid-up", "bid-size-up", "bid-size-down", "bid-down", "ask-down", "ask-up",
         "ask-size", "both-in", "both-out", "unchanged"],
)
def test_ofi_cases(after, expected):
    assert order_flow_imbalance(BEFORE, after) == expected


@pytest.mark.parametrize(
    "before, after",
    [
        ((None, None, 101.0, 4.0), BEFORE),
        ((100.0, 5.0, None, None), BEFORE),
        (BEFORE, (None, None, 101.0, 4.0)),
        (BEFORE, (100.0, 5.0, None, None)),
        (EMPTY_TOP, EMPTY_TOP),
    ],
)
def test_ofi_none_when_a_side_is_missing(before, after):
    assert order_flow_imbalance(before, after) is None


# ------------------------------------------------------ OFI property vs brute force

PRICES = st.integers(min_value=1, max_value=10).map(float)
SIZES = st.integers(min_value=0, max_value=12).map(lambda i: i * 0.5)
SIDE = st.lists(st.tuples(PRICES, SIZES), max_size=6)
# A snapshot lists each price at most once (what venues send); zero sizes included.
SNAP_SIDE = st.dictionaries(PRICES, SIZES, max_size=6).map(lambda d: list(d.items()))


def ref_best(bids, asks):
    pb = max(bids) if bids else None
    pa = min(asks) if asks else None
    return pb, (bids[pb] if bids else None), pa, (asks[pa] if asks else None)


def ref_ofi(before, after):
    pb0, qb0, pa0, qa0 = before
    pb1, qb1, pa1, qa1 = after
    if None in (pb0, pa0, pb1, pa1):
        return None
    if pb1 > pb0:
        bid = qb1
    elif pb1 == pb0:
        bid = qb1 - qb0
    else:
        bid = -qb0
    if pa1 < pa0:
        ask = -qa1
    elif pa1 == pa0:
        ask = qa0 - qa1
    else:
        ask = qa0
    return bid + ask


def ref_apply(side, changes):
    for p, s in changes:
        if s == 0.0:
            side.pop(p, None)
        else:
            side[p] = s


@settings(max_examples=200, deadline=None)
@given(SNAP_SIDE, SNAP_SIDE, st.lists(st.tuples(SIDE, SIDE), min_size=1, max_size=20))
def test_summary_ofi_matches_brute_force(snap_bids, snap_asks, updates):
    book = OrderBook()
    book.replace(snap_bids, snap_asks)
    rb, ra = {}, {}
    ref_apply(rb, snap_bids)
    ref_apply(ra, snap_asks)
    # the snapshot summary never has an OFI
    first = summarize(book, event(SNAPSHOT), None, top_of_book(book), 3)
    assert first["ofi"] is None
    for bids, asks in updates:
        before = top_of_book(book)
        ref_before = ref_best(rb, ra)
        assert before == ref_before
        book.apply(bids, asks)
        ref_apply(rb, bids)
        ref_apply(ra, asks)
        s = summarize(book, event(), before, top_of_book(book), 3)
        assert s["ofi"] == ref_ofi(ref_before, ref_best(rb, ra))

"""OrderBook: hand-checked cases plus a property test against a brute-force dict book."""

from hypothesis import given, settings
from hypothesis import strategies as st

from state.book import OrderBook


# --------------------------------------------------------------------------- unit cases


def test_empty_book_has_no_best_levels_and_zero_depth():
    book = OrderBook()
    assert book.best_bid() is None
    assert book.best_ask() is None
    assert book.top_bids(3) == []
    assert book.top_asks(3) == []
    assert book.depth(5) == (0, 0)
    assert len(book) == 0


def test_replace_drops_zero_sizes_and_orders_sides():
    book = OrderBook()
    book.replace(
        bids=[(99.0, 1.0), (101.0, 0.0), (100.0, 2.0)],
        asks=[(103.0, 4.0), (102.0, 3.0), (104.0, 0.0)],
    )
    # 101 bid and 104 ask had size 0 and must not exist at all.
    assert dict(book.bids) == {99.0: 1.0, 100.0: 2.0}
    assert dict(book.asks) == {102.0: 3.0, 103.0: 4.0}
    assert book.best_bid() == (100.0, 2.0)
    assert book.best_ask() == (102.0, 3.0)
    assert book.top_bids(5) == [(100.0, 2.0), (99.0, 1.0)]
    assert book.top_asks(1) == [(102.0, 3.0)]
    # depth(1) = (2, 3); depth(2) = (2 + 1, 3 + 4) = (3, 7)
    assert book.depth(1) == (2.0, 3.0)
    assert book.depth(2) == (3.0, 7.0)
    assert len(book) == 4


def test_replace_discards_every_old_level():
    book = OrderBook()
    book.replace([(10.0, 1.0), (9.0, 2.0), (8.0, 3.0)], [(11.0, 1.0), (12.0, 2.0)])
    book.apply([(7.0, 5.0)], [(13.0, 5.0)])
    # New snapshot shares one price (9.0) with the old book, with a new size.
    book.replace([(9.0, 4.0)], [(14.0, 6.0)])
    assert dict(book.bids) == {9.0: 4.0}
    assert dict(book.asks) == {14.0: 6.0}
    assert len(book) == 2


def test_replace_with_empty_snapshot_empties_the_book():
    book = OrderBook()
    book.replace([(10.0, 1.0)], [(11.0, 1.0)])
    book.replace([], [])
    assert len(book) == 0
    assert book.best_bid() is None and book.best_ask() is None


def test_apply_sets_overwrites_and_deletes_in_order():
    book = OrderBook()
    book.replace([(10.0, 1.0)], [(11.0, 1.0)])
    n = book.apply(
        bids=[(10.0, 5.0), (9.0, 2.0), (9.0, 0.0), (8.0, 0.0)],  # 9 added then removed; 8 absent
        asks=[(11.0, 0.0), (12.0, 3.0)],
    )
    # every change counts, including the deletes of absent levels: 4 + 2 = 6
    assert n == 6
    assert dict(book.bids) == {10.0: 5.0}
    assert dict(book.asks) == {12.0: 3.0}
    assert book.best_ask() == (12.0, 3.0)


def test_apply_delete_of_absent_level_is_a_no_op():
    book = OrderBook()
    assert book.apply([(1.0, 0.0)], [(2.0, 0.0)]) == 2
    assert len(book) == 0


def test_deleting_last_level_leaves_side_empty():
    book = OrderBook()
    book.replace([(10.0, 1.0)], [(11.0, 1.0)])
    book.apply([(10.0, 0.0)], [])
    assert book.best_bid() is None
    assert book.best_ask() == (11.0, 1.0)
    assert book.depth(3) == (0, 1.0)


# ------------------------------------------------------------------ property vs reference

# Small price grid so that inserts, overwrites and deletes collide often. Bids and asks
# share the grid on purpose: the book itself does not forbid crossing.
PRICES = st.integers(min_value=1, max_value=12).map(lambda i: 100.0 + i * 0.5)
# Multiples of 0.25 are exact in binary, so sums are order-independent and comparable with ==.
SIZES = st.one_of(st.just(0.0), st.integers(min_value=0, max_value=20).map(lambda i: i * 0.25))

SNAPSHOT_SIDE = st.dictionaries(PRICES, SIZES, max_size=10).map(lambda d: list(d.items()))
DELTA_SIDE = st.lists(st.tuples(PRICES, SIZES), max_size=8)

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("replace"), SNAPSHOT_SIDE, SNAPSHOT_SIDE),
        st.tuples(st.just("apply"), DELTA_SIDE, DELTA_SIDE),
    ),
    min_size=1,
    max_size=25,
)


class RefBook:
    """Deliberately naive: two plain dicts, best by max/min, top-n by sorted()."""

    def __init__(self):
        self.bids = {}
        self.asks = {}

    def replace(self, bids, asks):
        self.bids = {}
        self.asks = {}
        for p, s in bids:
            if s != 0.0:
                self.bids[p] = s
        for p, s in asks:
            if s != 0.0:
                self.asks[p] = s

    def apply(self, bids, asks):
        for side, changes in ((self.bids, bids), (self.asks, asks)):
            for p, s in changes:
                if s == 0.0:
                    if p in side:
                        del side[p]
                else:
                    side[p] = s
        return len(bids) + len(asks)

    def best_bid(self):
        if not self.bids:
            return None
        p = max(self.bids)
        return (p, self.bids[p])

    def best_ask(self):
        if not self.asks:
            return None
        p = min(self.asks)
        return (p, self.asks[p])

    def top_bids(self, n):
        return [(p, self.bids[p]) for p in sorted(self.bids, reverse=True)[:n]]

    def top_asks(self, n):
        return [(p, self.asks[p]) for p in sorted(self.asks)[:n]]

    def depth(self, n):
        return (sum(s for _, s in self.top_bids(n)), sum(s for _, s in self.top_asks(n)))


def assert_same(book, ref):
    assert dict(book.bids) == ref.bids
    assert dict(book.asks) == ref.asks
    assert list(book.bids.keys()) == sorted(ref.bids)
    assert list(book.asks.keys()) == sorted(ref.asks)
    assert book.best_bid() == ref.best_bid()
    assert book.best_ask() == ref.best_ask()
    assert len(book) == len(ref.bids) + len(ref.asks)
    big = max(len(ref.bids), len(ref.asks)) + 2
    for n in (0, 1, 2, 3, 5, big):
        assert book.top_bids(n) == ref.top_bids(n)
        assert book.top_asks(n) == ref.top_asks(n)
        assert book.depth(n) == ref.depth(n)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_book_matches_brute_force_reference(ops):
    book = OrderBook()
    ref = RefBook()
    assert_same(book, ref)
    for op, bids, asks in ops:
        if op == "replace":
            book.replace(bids, asks)
            ref.replace(bids, asks)
        else:
            assert book.apply(bids, asks) == ref.apply(bids, asks)
        assert_same(book, ref)


@settings(max_examples=200, deadline=None)
@given(DELTA_SIDE, DELTA_SIDE, SNAPSHOT_SIDE, SNAPSHOT_SIDE)
def test_replace_never_merges_into_stale_book(old_bids, old_asks, snap_bids, snap_asks):
    book = OrderBook()
    book.apply(old_bids, old_asks)
    book.replace(snap_bids, snap_asks)
    fresh = OrderBook()
    fresh.replace(snap_bids, snap_asks)
    # Whatever was there before, the result is exactly the snapshot's positive levels.
    assert dict(book.bids) == dict(fresh.bids) == {p: s for p, s in snap_bids if s != 0.0}
    assert dict(book.asks) == dict(fresh.asks) == {p: s for p, s in snap_asks if s != 0.0}

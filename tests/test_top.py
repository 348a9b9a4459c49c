"""TopWindow's shortcut is exact: after any sequence of snapshots and updates, its
best levels and depths equal a direct read of the book."""

from hypothesis import given, settings
from hypothesis import strategies as st

from state.book import OrderBook
from state.metrics import top_of_book
from state.top import TopWindow

prices = st.integers(min_value=1, max_value=40).map(float)
sizes = st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 2.75])
levels = st.lists(st.tuples(prices, sizes), max_size=12)
ops = st.lists(st.tuples(st.booleans(), levels, levels), min_size=1, max_size=40)


def check(window: TopWindow, book: OrderBook, n: int) -> None:
    assert window.top == top_of_book(book)
    assert (window.bid_depth, window.ask_depth) == book.depth(n)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(min_value=1, max_value=6), ops=ops)
def test_window_matches_direct_read(n, ops):
    book = OrderBook()
    window = TopWindow(n)
    window.reset(book)
    check(window, book, n)
    for is_snapshot, bids, asks in ops:
        if is_snapshot:
            book.replace(dict(bids).items(), dict(asks).items())
            window.reset(book)
        else:
            book.apply(bids, asks)
            window.update(book, bids, asks)
        check(window, book, n)


def test_changes_below_the_window_skip_the_recompute():
    book = OrderBook()
    book.replace([(100.0 - i, 1.0) for i in range(20)], [(101.0 + i, 1.0) for i in range(20)])
    window = TopWindow(5)
    window.reset(book)
    assert (window.bid_edge, window.ask_edge) == (96.0, 105.0)
    book.apply([(90.0, 3.0)], [(110.0, 0.0)])  # deep changes on both sides
    window.update(book, [(90.0, 3.0)], [(110.0, 0.0)])
    assert (window.bid_edge, window.ask_edge) == (96.0, 105.0)
    book.apply([(96.0, 4.0)], [])  # at the edge: inside the window
    window.update(book, [(96.0, 4.0)], [])
    assert window.bid_depth == 8.0 and window.top == (100.0, 1.0, 101.0, 1.0)

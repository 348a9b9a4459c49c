"""The best levels and top-N depth of a book, recomputed only when an update reaches them.

Every summary needs the best bid/ask and the total size over the N best levels of
each side. Reading those from the sorted book costs a few microseconds per update,
a large share of the per-update budget, while on a deep book most updates change
levels far from the top (three in four on the Coinbase recording, per side).

The shortcut is exact: a change at a price strictly below the N-th best bid can
neither enter the N best bids nor alter them, so the best bid and the bid depth
stay what they were (asks mirrored). When a side holds fewer than N levels every
change may matter, and the side is always recomputed.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from state.book import OrderBook
from state.events import Level
from state.metrics import Top

_INF = float("inf")


class TopWindow:
    """Best levels and depth over the ``n`` best levels of each side of one book."""

    __slots__ = ("n", "bid", "ask", "bid_depth", "ask_depth", "bid_edge", "ask_edge")

    def __init__(self, n: int) -> None:
        self.n = n
        self.bid: Optional[Level] = None
        self.ask: Optional[Level] = None
        self.bid_depth = self.ask_depth = 0.0
        self.bid_edge = -_INF  # the n-th best bid price; changes below it don't matter
        self.ask_edge = _INF

    def reset(self, book: OrderBook) -> None:
        """Recompute both sides (after a snapshot replaced the book)."""
        self._bids(book)
        self._asks(book)

    def update(self, book: OrderBook, bids: List[Level], asks: List[Level]) -> None:
        """Bring the window up to date after ``bids``/``asks`` changes were applied."""
        if bids and max(bids)[0] >= self.bid_edge:
            self._bids(book)
        if asks and min(asks)[0] <= self.ask_edge:
            self._asks(book)

    @property
    def top(self) -> Top:
        """``(bid_px, bid_sz, ask_px, ask_sz)``, None for an empty side."""
        bid = self.bid or (None, None)
        ask = self.ask or (None, None)
        return (bid[0], bid[1], ask[0], ask[1])

    def _bids(self, book: OrderBook) -> None:
        levels = book.top_bids(self.n)
        self.bid, self.bid_depth, self.bid_edge = _window(levels, self.n, -_INF)

    def _asks(self, book: OrderBook) -> None:
        levels = book.top_asks(self.n)
        self.ask, self.ask_depth, self.ask_edge = _window(levels, self.n, _INF)


def _window(levels: List[Level], n: int,
            open_edge: float) -> Tuple[Optional[Level], float, float]:
    """Best level, total size and edge price of a side's ``n`` best levels."""
    if not levels:
        return None, 0.0, open_edge
    depth = sum([size for _, size in levels])
    edge = levels[-1][0] if len(levels) == n else open_edge
    return levels[0], depth, edge

"""What the book step keeps for one product, and how it reacts to each event.

A :class:`ProductState` is the Bytewax state of one ``venue:product`` key. It owns
the order book, knows whether that book can be trusted, and turns each event into
output records (plain dicts, ready for any sink):

* ``{"type": "summary", ...}`` after every update applied to a valid book;
* ``{"type": "status", ...}`` when the book becomes invalid or is rebuilt;
* ``{"type": "alert", ...}`` when the spread widens past the threshold, or the
  book crosses or locks;
* ``{"type": "trade", ...}`` for every trade print counted (each once), and
  ``{"type": "ticker", ...}`` for mark/index/funding updates;
* ``{"type": "bar", ...}`` when a time bar closes (see :mod:`state.bars`).

Bytewax snapshots state at every epoch, recovery or not. A live book can never
be resumed from a snapshot (the feed has no replayable position, so a restored
book would silently miss every update since), so the snapshot deliberately leaves
the book out: restored state waits for a fresh exchange snapshot, and the
per-epoch cost is constant instead of a copy of tens of thousands of levels.
Counters, the recent trade ids (so a trade resent after a restart is not counted
twice) and the open bars do survive a restart.
"""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

from state.bars import Bars
from state.book import OrderBook
from state.events import REFRESH, SNAPSHOT, BookEvent, BookStatus, Clock, Ticker, Trade
from state.metrics import EMPTY_TOP, Top, summarize
from state.top import TopWindow
from state.trades import DUPLICATE, TradeLog

Record = Dict[str, Any]
Item = Union[BookEvent, BookStatus, Trade, Ticker, Clock]

VALID = "synced"
INVALID = "invalid"
#: A status that reports a problem without changing the book's validity.
WARNING = "warning"
#: The source's reason when the exchange refused the product's subscription.
REFUSED = "refused"


class BarSpec(NamedTuple):
    """How bars are built: intervals, allowed lateness, how long emitted bars stay
    open to revisions (all ms), and whether windows without trades are emitted."""

    intervals_ms: Sequence[int]
    lateness_ms: float
    keep_ms: float
    empty: bool = False

    def build(self) -> Bars:
        return Bars(self.intervals_ms, self.lateness_ms, self.keep_ms, self.empty)


class ProductState:
    """Book, validity, alert latch, counters, trade ids and bars of one product."""

    __slots__ = ("book", "window", "valid", "top", "wide", "counts", "trades", "bar_spec",
                 "bars")

    def __init__(self, bars: Optional[BarSpec] = None) -> None:
        self.book = OrderBook()
        self.window: Optional[TopWindow] = None
        self.valid = False
        self.top: Top = EMPTY_TOP
        self.wide = False
        self.counts: Counter = Counter()
        self.trades = TradeLog()
        self.bar_spec = bars
        self.bars: Optional[Bars] = bars.build() if bars else None

    # -- recovery: everything but the book -----------------------------------------
    def __getstate__(self) -> Dict[str, Any]:
        return {"counts": dict(self.counts), "trades": self.trades, "bar_spec": self.bar_spec,
                "bars": self.bars}

    def __setstate__(self, data: Dict[str, Any]) -> None:
        self.__init__(data["bar_spec"])  # type: ignore[misc]
        self.counts.update(data["counts"])
        self.trades = data["trades"]
        self.bars = data["bars"]

    def adopt_book(self, other: "ProductState") -> None:
        """Take ``other``'s book and everything derived from it (validity, top of
        book, depth window, spread-alert latch), keeping this state's counters,
        trade ids and bars: a flow resumed from a Kafka topic rebuilds books in a
        scratch state from frames whose records were already emitted
        (:mod:`dataflows.kafka_book`). These are exactly the fields a snapshot
        leaves out."""
        self.book, self.window, self.valid = other.book, other.window, other.valid
        self.top, self.wide = other.top, other.wide

    def snapshot(self) -> bytes:
        """An immutable copy for Bytewax (pickled now, so later changes cannot leak in)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, snapshot: bytes, bars: Optional[BarSpec]) -> "ProductState":
        """The state a snapshot held; its bars are kept only if ``bars`` is still
        what they were built with (a changed configuration starts them afresh)."""
        state: ProductState = pickle.loads(snapshot)
        if state.bar_spec != bars:
            state.bar_spec = bars
            state.bars = bars.build() if bars else None
        return state

    def on_item(self, item: Item, depth_n: int, alert_bps: float) -> List[Record]:
        """Apply one event (or a status from the source) and return the records.

        A book found crossed or locked yields an ``alert`` record of that kind: the
        caller asks the source to resynchronise the product when it sees one."""
        kind = type(item)
        if kind is BookEvent:
            out = self._on_book(item, depth_n, alert_bps)  # type: ignore[arg-type]
            bars = self.bars
            if bars is not None and item.ts_exchange is not None:  # type: ignore[union-attr]
                for rec in out:
                    if rec["type"] == "summary":
                        bars.on_book(item.ts_exchange, rec)  # type: ignore[union-attr]
                out.extend(bars.advance(item.ts_exchange, item.venue,  # type: ignore[union-attr]
                                        item.product))
            return out
        if kind is Trade:
            return self._on_trade(item)  # type: ignore[arg-type]
        if kind is Ticker:
            return self._on_ticker(item)  # type: ignore[arg-type]
        if kind is Clock:
            bars = self.bars
            return bars.advance(item.ts_exchange, item.venue, item.product) if bars else []
        return self._on_status(item)  # type: ignore[arg-type]

    def finish(self, venue: str, product: str) -> List[Record]:
        """End of input: the bars still open, marked incomplete."""
        return self.bars.finish(venue, product) if self.bars is not None else []

    def _on_trade(self, t: Trade) -> List[Record]:
        verdict, missing = self.trades.accept(t)
        if verdict is DUPLICATE:
            self.counts["trade_duplicates"] += 1
            return []
        self.counts["trades"] += 1
        out: List[Record] = [{
            "type": "trade", "venue": t.venue, "product": t.product,
            "ts_exchange": t.ts_exchange, "ts_recv": t.ts_recv, "trade_id": t.trade_id,
            "price": t.price, "size": t.size, "side": t.side, "base_size": t.base_size,
            "notional": t.notional, "fills": t.fills}]
        if missing:
            self.counts["trade_gaps"] += 1
            self.counts["trades_missing"] += missing
            out.append(_status(t.venue, t.product, t.ts_recv, WARNING, "trade_gap",
                               f"{missing} trade ids missing before {t.seq}"))
        if self.bars is not None:
            out.extend(self.bars.on_trade(t, missing, t.venue, t.product))
        return out

    def _on_ticker(self, t: Ticker) -> List[Record]:
        self.counts["tickers"] += 1
        out: List[Record] = [{
            "type": "ticker", "venue": t.venue, "product": t.product,
            "ts_exchange": t.ts_exchange, "ts_recv": t.ts_recv, "mark": t.mark,
            "index": t.index, "funding_rate": t.funding_rate, "last": t.last}]
        if self.bars is not None:
            self.bars.on_ticker(t)
            out.extend(self.bars.advance(t.ts_exchange, t.venue, t.product))
        return out

    def _on_book(self, item: BookEvent, depth_n: int, alert_bps: float) -> List[Record]:
        counts = self.counts
        window = self.window
        if window is None or window.n != depth_n:
            window = self.window = TopWindow(depth_n)
            window.reset(self.book)
        kind = item.kind
        if kind is SNAPSHOT or kind is REFRESH:
            counts["snapshots" if kind is SNAPSHOT else "refreshes"] += 1
            # A refresh is the stream itself (a complete top-N book each time), so
            # its order flow against the previous top is meaningful; a snapshot
            # rebuilds a book after an outage, where "before" means nothing.
            before: Optional[Top] = self.top if kind is REFRESH and self.valid else None
            self.book.replace(item.bids, item.asks)
            window.reset(self.book)
        elif not self.valid:
            counts["dropped_invalid"] += 1
            return []
        else:
            before = self.top
            counts["level_changes"] += self.book.apply(item.bids, item.asks)
            window.update(self.book, item.bids, item.asks)
        counts["updates"] += 1
        top = window.top
        bid_px, ask_px = top[0], top[2]
        out: List[Record] = []
        if bid_px is not None and ask_px is not None and bid_px >= ask_px:
            reason = "crossed" if bid_px > ask_px else "locked"
            detail = f"bid {bid_px} {'>' if reason == 'crossed' else '='} ask {ask_px}"
            out.append(_alert(item.venue, item.product, item.ts_recv, reason, detail, None))
            out.extend(self._invalidate(item.venue, item.product, item.ts_recv, reason, detail,
                                        always=True))
            return out
        if not self.valid:
            self.valid = True
            out.append(_status(item.venue, item.product, item.ts_recv, VALID, "snapshot",
                               f"{len(self.book.bids)} bids, {len(self.book.asks)} asks"))
        summary = summarize(self.book, item, before, top, depth_n,
                            (window.bid_depth, window.ask_depth))
        self.top = top
        out.append(summary)
        spread_bps = summary["spread_bps"]
        wide = spread_bps is not None and spread_bps > alert_bps
        if wide and not self.wide:
            out.append(_alert(item.venue, item.product, item.ts_recv, "spread",
                              f"spread {spread_bps:.2f} bps > {alert_bps:g} bps "
                              f"(bid {bid_px} ask {ask_px})", spread_bps))
        self.wide = wide
        return out

    def _on_status(self, status: BookStatus) -> List[Record]:
        """A status from the source (gap, disconnect, refusal) invalidates the book.

        While the book is invalid already, a further gap or disconnect adds nothing,
        and neither does the source's own status for a resync this step asked for
        (a crossed book, reported when found). A refusal is always reported: it is
        final, and typically comes before the book was ever synced."""
        if status.state != INVALID:
            return [status._asdict() | {"type": "status"}]
        return self._invalidate(status.venue, status.product, status.ts_recv,
                                status.reason, status.detail, always=status.reason == REFUSED)

    def _invalidate(self, venue: str, product: str, ts: float, reason: str,
                    detail: str, always: bool = False) -> List[Record]:
        """Mark the book untrusted, free it, and report it once per outage (or
        ``always``: a book found crossed, a refused subscription)."""
        self.counts[f"invalid_{reason}"] += 1
        was_valid = self.valid
        self.valid = False
        self.wide = False
        self.top = EMPTY_TOP
        self.book = OrderBook()
        if not was_valid and not always:
            return []
        return [_status(venue, product, ts, INVALID, reason, detail)]


def _status(venue: str, product: str, ts: float, state: str, reason: str,
            detail: str) -> Record:
    return {"type": "status", "venue": venue, "product": product, "ts_recv": ts,
            "state": state, "reason": reason, "detail": detail}


def _alert(venue: str, product: str, ts: float, kind: str, detail: str,
           spread_bps: Optional[float]) -> Record:
    return {"type": "alert", "venue": venue, "product": product, "ts_recv": ts,
            "kind": kind, "spread_bps": spread_bps, "detail": detail}

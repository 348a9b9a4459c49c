"""What the book step keeps for one product, and how it reacts to each event.

A :class:`ProductState` is the Bytewax state of one ``venue:product`` key. It owns
the order book, knows whether that book can be trusted, and turns each event into
output records (plain dicts, ready for any sink):

* ``{"type": "summary", ...}`` after every update applied to a valid book;
* ``{"type": "status", ...}`` when the book becomes invalid or is rebuilt;
* ``{"type": "alert", ...}`` when the spread widens past the threshold, or the
  book crosses or locks.

Bytewax snapshots state at every epoch (with ``copy.deepcopy``, recovery or not).
A live book can never be resumed from a snapshot (the feed has no replayable
position, so a restored book would silently miss every update since), so the
snapshot deliberately leaves the book out: restored state waits for a fresh
exchange snapshot, and the per-epoch cost is constant instead of a deep copy of
tens of thousands of levels. Counters do survive a restart.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Union

from state.book import OrderBook
from state.events import REFRESH, SNAPSHOT, BookEvent, BookStatus
from state.metrics import EMPTY_TOP, Top, summarize
from state.top import TopWindow

Record = Dict[str, Any]

VALID = "synced"
INVALID = "invalid"
#: The source's reason when the exchange refused the product's subscription.
REFUSED = "refused"


class ProductState:
    """Book, validity, alert latch and counters of one product."""

    __slots__ = ("book", "window", "valid", "top", "wide", "counts")

    def __init__(self) -> None:
        self.book = OrderBook()
        self.window: Optional[TopWindow] = None
        self.valid = False
        self.top: Top = EMPTY_TOP
        self.wide = False
        self.counts: Counter = Counter()

    # Bytewax's per-epoch snapshot and recovery go through these two.
    def __deepcopy__(self, memo: Dict[int, Any]) -> "ProductState":
        clone = ProductState()
        clone.counts = Counter(self.counts)
        return clone

    def __getstate__(self) -> Dict[str, Any]:
        return {"counts": dict(self.counts)}

    def __setstate__(self, data: Dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self.counts.update(data["counts"])

    def on_item(
        self, item: Union[BookEvent, BookStatus], depth_n: int, alert_bps: float
    ) -> List[Record]:
        """Apply one event (or a status from the source) and return the records.

        A book found crossed or locked yields an ``alert`` record of that kind: the
        caller asks the source to resynchronise the product when it sees one."""
        if isinstance(item, BookStatus):
            return self._on_status(item)
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

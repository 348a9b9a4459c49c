"""Per-update book summaries: spread, mid, microprice, imbalances and OFI.

A summary is a flat dict so that every sink (JSON lines, stdout, later Parquet or
Kafka) can write it without knowing lobstream's types. The field list and units
are documented in the README; keep the two in step.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from state.book import OrderBook
from state.events import BookEvent

#: Best levels as ``(bid_px, bid_sz, ask_px, ask_sz)``; a missing side is None.
Top = Tuple[Optional[float], Optional[float], Optional[float], Optional[float]]

EMPTY_TOP: Top = (None, None, None, None)

SUMMARY_FIELDS = (
    "type", "venue", "product", "ts_exchange", "ts_recv", "seq",
    "bid_px", "bid_sz", "ask_px", "ask_sz", "spread", "spread_bps", "mid",
    "microprice", "imbalance", "depth_imbalance", "ofi", "bid_levels", "ask_levels",
    "depth_limit",
)


def top_of_book(book: OrderBook) -> Top:
    """The book's best bid and ask with their sizes."""
    bb = book.best_bid()
    ba = book.best_ask()
    return (
        bb[0] if bb else None,
        bb[1] if bb else None,
        ba[0] if ba else None,
        ba[1] if ba else None,
    )


def order_flow_imbalance(before: Top, after: Top) -> Optional[float]:
    """Cont, Kukanov and Stoikov (2014) order flow imbalance of one book event.

    ``e = 1[Pb' >= Pb]·qb' − 1[Pb' <= Pb]·qb − 1[Pa' <= Pa]·qa' + 1[Pa' >= Pa]·qa``
    where unprimed values are the best levels before the event and primed ones after.
    Positive values mean net buying pressure. None when either side is empty before
    or after, since the definition compares best levels that then do not exist.
    """
    pb0, qb0, pa0, qa0 = before
    pb1, qb1, pa1, qa1 = after
    if pb0 is None or pa0 is None or pb1 is None or pa1 is None:
        return None
    e = 0.0
    if pb1 >= pb0:
        e += qb1
    if pb1 <= pb0:
        e -= qb0
    if pa1 <= pa0:
        e -= qa1
    if pa1 >= pa0:
        e += qa0
    return e


def summarize(
    book: OrderBook, event: BookEvent, before: Optional[Top], top: Top, depth_n: int,
    depth: Optional[Tuple[float, float]] = None,
) -> Dict[str, Any]:
    """Summarise ``book`` right after ``event`` was applied.

    ``top`` is the book's current :func:`top_of_book` (the caller has it already,
    from its crossed-book check). ``before`` is the top of book before the event,
    or None when the event replaced the book: a snapshot has no meaningful
    "before", so its OFI is null. ``depth`` is the ``(bid, ask)`` size over the
    ``depth_n`` best levels when the caller keeps it (:class:`state.top.TopWindow`);
    otherwise it is read from the book. Every two-sided figure is None while either
    side is empty. ``depth_limit`` is N when the venue only sends the N best levels
    (then ``bid_levels``/``ask_levels`` count those), None for a full book.
    """
    bid_px, bid_sz, ask_px, ask_sz = top
    spread = spread_bps = mid = micro = imbalance = depth_imbalance = None
    if bid_px is not None and ask_px is not None:
        spread = ask_px - bid_px
        mid = (bid_px + ask_px) * 0.5
        spread_bps = spread / mid * 1e4 if mid > 0.0 else None
        vol = bid_sz + ask_sz
        # (bid·ask_sz + ask·bid_sz) / vol, written as bid + spread·weight with the
        # weight in [0, 1], so it never falls below the bid; the product form gave
        # 100.0 for 100.3 / 100.4 with subnormal sizes, and overshot the ask
        # (1919.4900000000002 > 1919.49 with a 4e12 bid size). Only a spread wider
        # than the bid (inexact subtraction) can round it past the ask, by an ulp.
        micro = bid_px + spread * (bid_sz / vol)
        if micro > ask_px:
            micro = ask_px
        imbalance = (bid_sz - ask_sz) / vol
        vb, va = depth if depth is not None else book.depth(depth_n)
        depth_imbalance = (vb - va) / (vb + va)
    return {
        "type": "summary",
        "venue": event.venue,
        "product": event.product,
        "ts_exchange": event.ts_exchange,
        "ts_recv": event.ts_recv,
        "seq": event.seq,
        "bid_px": bid_px,
        "bid_sz": bid_sz,
        "ask_px": ask_px,
        "ask_sz": ask_sz,
        "spread": spread,
        "spread_bps": spread_bps,
        "mid": mid,
        "microprice": micro,
        "imbalance": imbalance,
        "depth_imbalance": depth_imbalance,
        "ofi": order_flow_imbalance(before, top) if before is not None else None,
        "bid_levels": len(book.bids),
        "ask_levels": len(book.asks),
        "depth_limit": event.depth_limit,
    }

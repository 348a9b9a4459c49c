"""Counting every trade once: duplicate ids and gaps in sequential ids, per product.

Venues resend trades: Coinbase Advanced Trade replays its recent trades in a
``snapshot`` on every (re)subscribe, and any venue's frames can arrive twice after
a reconnect. A trade is therefore counted only if its id was not seen among the
product's recent trades. Where ids are sequential (Binance ``a``/``t``, Deribit
``trade_seq``, Coinbase Exchange ``trade_id``), an id that skips numbers means
prints were lost, which no client can recover from the stream: the gap is counted
and reported as a status, and the bars it falls into say how many trades they
are known to miss.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Optional, Set, Tuple

from state.events import Trade

#: Trade ids remembered per product: Coinbase resends its 200 most recent trades
#: in a snapshot (measured on the recording), so five times that is ample.
RECENT_IDS = 1000

#: Verdicts of :meth:`TradeLog.accept`.
NEW = "new"
DUPLICATE = "duplicate"


class TradeLog:
    """Recent trade ids and the last sequential id of one product."""

    __slots__ = ("last_seq", "_ids", "_order")

    def __init__(self) -> None:
        self.last_seq: Optional[int] = None
        self._ids: Set[str] = set()
        self._order: Deque[str] = deque()

    def accept(self, trade: Trade) -> Tuple[str, int]:
        """``(verdict, missing)``: NEW or DUPLICATE, and how many sequential ids
        were skipped before this trade (0 without a sequence)."""
        tid = trade.trade_id
        if tid in self._ids:
            return DUPLICATE, 0
        seq, last = trade.seq, self.last_seq
        missing = 0
        if seq is not None and last is not None:
            if seq <= last:
                return DUPLICATE, 0  # older than the newest counted: seen before
            missing = seq - last - 1
        if seq is not None:
            self.last_seq = seq
        self._remember(tid)
        return NEW, missing

    def _remember(self, tid: str) -> None:
        self._ids.add(tid)
        self._order.append(tid)
        if len(self._order) > RECENT_IDS:
            self._ids.discard(self._order.popleft())

    def __getstate__(self) -> Dict[str, Any]:
        return {"last_seq": self.last_seq, "ids": list(self._order)}

    def __setstate__(self, data: Dict[str, Any]) -> None:
        self.last_seq = data["last_seq"]
        self._order = deque(data["ids"])
        self._ids = set(self._order)

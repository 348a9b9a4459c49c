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
from state.sync import MAX_JUMP

#: Trade ids remembered per product: Coinbase resends its 200 most recent trades
#: in a snapshot (measured on the recording), so five times that is ample.
RECENT_IDS = 1000

#: Verdicts of :meth:`TradeLog.accept`.
NEW = "new"
DUPLICATE = "duplicate"


class TradeLog:
    """Recent trade ids and the last sequential id of one product.

    A trade whose id is not among the recent ones is new, even if its sequential
    id is below the newest counted, unless it is older than every remembered
    trade: the newest may have been a forged number (one trade carrying id 2**53
    made every later trade of the product a "duplicate"), and a trade lost in a
    gap may still come. A jump past :data:`~state.sync.MAX_JUMP` is no gap but a
    corrupt number: the trade counts, and the last id stays where it was."""

    __slots__ = ("last_seq", "_ids", "_order", "_seqs")

    def __init__(self) -> None:
        self.last_seq: Optional[int] = None
        self._ids: Set[str] = set()
        self._order: Deque[str] = deque()
        #: The sequential ids of the remembered trades that have one, oldest first.
        self._seqs: Deque[int] = deque()

    def accept(self, trade: Trade) -> Tuple[str, int]:
        """``(verdict, missing)``: NEW or DUPLICATE, and how many sequential ids
        were skipped before this trade (0 without a sequence)."""
        tid = trade.trade_id
        if tid in self._ids:
            return DUPLICATE, 0
        seq, last = trade.seq, self.last_seq
        missing = 0
        if seq is not None and last is not None and seq <= last:
            if not self._seqs or seq < min(self._seqs):
                return DUPLICATE, 0  # older than any trade remembered: seen before
        elif seq is not None and (last is None or seq - last <= MAX_JUMP):
            if last is not None:
                missing = seq - last - 1
            self.last_seq = seq
        self._remember(tid, seq)
        return NEW, missing

    def _remember(self, tid: str, seq: Optional[int]) -> None:
        self._ids.add(tid)
        self._order.append(tid)
        if len(self._order) > RECENT_IDS:
            self._ids.discard(self._order.popleft())
        if seq is not None:
            self._seqs.append(seq)
            if len(self._seqs) > RECENT_IDS:
                self._seqs.popleft()

    def __getstate__(self) -> Dict[str, Any]:
        return {"last_seq": self.last_seq, "ids": list(self._order), "seqs": list(self._seqs)}

    def __setstate__(self, data: Dict[str, Any]) -> None:
        self.last_seq = data["last_seq"]
        self._order = deque(data["ids"])
        self._ids = set(self._order)
        self._seqs = deque(data.get("seqs", ()))

"""Sequence checks: is a message the next one, a duplicate, or past a gap?

These run where the connection lives (the source partition), because that is the
only place that can act on a gap by resubscribing the product. They hold no I/O so
that live feeds, file replay and the tests share them.

Two kinds of chains exist:

* a per-connection counter (Coinbase Advanced Trade ``sequence_num``, which counts
  every message on the connection, heartbeats included): :class:`ConnectionSequence`;
* a per-book chain (Deribit ``prev_change_id``→``change_id``, Binance ``U``/``u``):
  :class:`BookSync`, which also knows whether a snapshot has been seen since the
  last (re)subscription, so deltas that arrive before it are never applied.
"""

from __future__ import annotations

from typing import Optional

from state.events import SNAPSHOT, BookEvent

OK = "ok"
DUPLICATE = "duplicate"
GAP = "gap"
UNSYNCED = "unsynced"


class ConnectionSequence:
    """A counter that must rise by exactly one per message on a connection."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: Optional[int] = None

    def check(self, seq: int) -> str:
        """Classify ``seq`` and advance: OK, DUPLICATE (at or below the last) or GAP."""
        last = self.last
        if last is None or seq == last + 1:
            self.last = seq
            return OK
        if seq <= last:
            return DUPLICATE
        self.last = seq
        return GAP

    def reset(self) -> None:
        """Forget the counter: a new connection starts its own."""
        self.last = None


class BookSync:
    """Whether a product's next event can be applied to the book we hold.

    An event with ``prev_seq`` chains onto the previous event's ``seq``. Right after
    a snapshot the first delta may straddle the snapshot's id (Binance's
    ``U <= lastUpdateId + 1 <= u``); from then on the chain must be exact.
    Venues without a per-book chain (Coinbase) leave ``prev_seq`` None and are only
    checked for having a snapshot.
    """

    __slots__ = ("synced", "last", "fresh")

    def __init__(self) -> None:
        self.synced = False
        self.last: Optional[int] = None
        self.fresh = False

    def check(self, event: BookEvent) -> str:
        """Classify ``event``: OK (apply it), DUPLICATE, GAP or UNSYNCED (drop it)."""
        if event.kind == SNAPSHOT:
            self.synced = True
            self.last = event.seq
            self.fresh = True
            return OK
        if not self.synced:
            return UNSYNCED
        prev, seq, last = event.prev_seq, event.seq, self.last
        if prev is None or seq is None or last is None:
            return OK
        if seq <= last:
            return DUPLICATE
        if prev == last or (self.fresh and prev < last):
            self.last = seq
            self.fresh = False
            return OK
        self.synced = False
        return GAP

    def invalidate(self) -> None:
        """Drop everything until the next snapshot (after a gap or a reconnect)."""
        self.synced = False
        self.last = None

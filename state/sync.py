"""Sequence checks: is a message the next one, a duplicate, or past a gap?

These run where the connection lives (the source partition), because that is the
only place that can act on a gap by resubscribing the product. They hold no I/O so
that live feeds, file replay and the tests share them.

Two kinds of chains exist:

* a per-connection counter (Coinbase Advanced Trade ``sequence_num``, which counts
  every message on the connection, heartbeats included): :class:`ConnectionSequence`;
* a per-book chain (Deribit ``prev_change_id``→``change_id``, Binance ``U``/``u``/``pu``):
  :class:`BookSync`, which also knows whether a snapshot has been seen since the
  last (re)subscription, so deltas that arrive before it are never applied. How a
  delta chains onto the book is the venue's :data:`ChainRule`.

No single number may disable a product. The parsers already reject ids that are
not integers in ``[0, 2**63)``; on top of that, a jump larger than
:data:`MAX_JUMP` is not a gap but a corrupt number (:data:`BOGUS`), and so is a
"duplicate" more than MAX_JUMP behind the last accepted number: then that number
was the corrupt one (a snapshot or a first frame carrying 10**18), and waiting for
a run of :data:`STUCK_AFTER` duplicates would freeze the book for 64 updates. A
run of STUCK_AFTER consecutive duplicates closer than that also means the last
accepted number was wrong, not that the exchange repeats itself (:data:`STUCK`).
Either way the caller resynchronises and the next snapshot re-bases the sequence.
Without this, a single update carrying ``change_id`` 10**18 would make every later
update look like a duplicate: a book that stays "synced", frozen, while the market
moves.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from state.events import REFRESH, SNAPSHOT, BookEvent

OK = "ok"
DUPLICATE = "duplicate"
GAP = "gap"
UNSYNCED = "unsynced"
#: A delta older than the snapshot it follows (Binance buffers them): dropped, not a gap.
STALE = "stale"
#: A number that cannot be right (a jump past MAX_JUMP, an id below its predecessor).
BOGUS = "bogus"
#: Too many consecutive duplicates: the sequence's reference point is wrong.
STUCK = "stuck"
#: A number inside the hole of the last gap: either the number that made the gap
#: was corrupt (and this is a real frame after it) or the frame comes late. Both
#: are dropped; a book synced since the gap may have missed it.
LATE = "late"

#: The largest forward jump of a sequence number that is taken for lost messages.
#: Deribit change ids grow by at most tens of thousands between the updates of one
#: instrument on the recordings (about 3e10 in all after years); Binance update ids
#: by thousands per 100 ms. 2**40 (1.1e12) leaves orders of magnitude of headroom and
#: still catches a corrupted number such as 10**18 or 2**63 - 1.
MAX_JUMP = 2**40
#: Consecutive duplicates after which the sequence is considered stuck. Real
#: duplicates come one or two at a time (a resent frame).
STUCK_AFTER = 64

#: ``rule(event, last, first_after_snapshot) -> verdict`` for a delta whose ids are set.
ChainRule = Callable[[BookEvent, int, bool], str]


def chain_exact(ev: BookEvent, last: int, fresh: bool) -> str:
    """Deribit: every delta names its predecessor (``prev_change_id``), which must be
    the last applied ``change_id``, including the first one after a snapshot."""
    if ev.seq <= last:  # type: ignore[operator]
        return DUPLICATE
    return OK if ev.prev_seq == last else GAP


def chain_binance_spot(ev: BookEvent, last: int, fresh: bool) -> str:
    """Binance spot (``seq`` = ``u``, ``prev_seq`` = ``U - 1``): after the REST
    snapshot's ``lastUpdateId`` L, deltas with ``u <= L`` are stale, the first
    applied straddles L + 1 (``U <= L + 1 <= u``), and afterwards
    ``U == previous u + 1``."""
    seq, prev = ev.seq, ev.prev_seq
    if seq <= last:  # type: ignore[operator]
        return STALE if fresh else DUPLICATE
    if fresh:
        return OK if prev <= last else GAP  # type: ignore[operator]
    return OK if prev == last else GAP


def chain_binance_futures(ev: BookEvent, last: int, fresh: bool) -> str:
    """Binance USD-M and COIN-M (``seq`` = ``u``, ``prev_seq`` = ``pu``,
    ``first_seq`` = ``U``): after the snapshot's ``lastUpdateId`` L, deltas with
    ``u < L`` are stale (not ``<=``), the first applied satisfies ``U <= L <= u``,
    and afterwards ``pu == previous u``."""
    seq = ev.seq
    if fresh:
        if seq < last:  # type: ignore[operator]
            return STALE
        first = ev.first_seq if ev.first_seq is not None else ev.prev_seq
        return OK if first is not None and first <= last else GAP
    if seq <= last:  # type: ignore[operator]
        return DUPLICATE
    return OK if ev.prev_seq == last else GAP


class ConnectionSequence:
    """A counter that must rise by exactly one per message on a connection."""

    __slots__ = ("last", "_duplicates", "_hole")

    def __init__(self) -> None:
        self.last: Optional[int] = None
        self._duplicates = 0
        #: The numbers the last gap skipped, ``(after, before)`` exclusive.
        self._hole: Optional[Tuple[int, int]] = None

    def check(self, seq: int) -> str:
        """Classify ``seq`` and advance: OK, DUPLICATE, GAP, BOGUS, STUCK or LATE.

        BOGUS is a jump of more than MAX_JUMP either way. After BOGUS or STUCK
        the counter forgets its reference: the next number is taken as the new
        start (the caller resyncs every book on the connection, so nothing is
        applied on the strength of it). LATE is a number inside the hole of the
        gap just seen. It is one of two things the counter cannot tell apart: a
        frame that comes late (the simulator's ``swap``: applying it would put an
        old update on a newer book), or a real frame after a corrupt number (one
        frame numbered 65 ahead, a snapshot, made the next 64 real frames
        "duplicates", and the book synced from that snapshot went on without
        their updates). Either way the frame is dropped and the counter keeps
        its reference, and the caller resyncs the books synced since the gap,
        which are the only ones the frame could have been about."""
        last = self.last
        if last is None or seq == last + 1:
            self.last = seq
            self._duplicates = 0
            self._hole = None  # (the frames after a real gap go on from it)
            return OK
        if seq <= last:
            hole = self._hole
            if hole is not None and hole[0] < seq < hole[1]:
                self._hole = None  # (the books it concerns are resynced once)
                return LATE
            if last - seq > MAX_JUMP:
                self.reset()
                return BOGUS
            self._duplicates += 1
            if self._duplicates >= STUCK_AFTER:
                self.reset()
                return STUCK
            return DUPLICATE
        self._duplicates = 0
        if seq - last > MAX_JUMP:
            self.last = None
            return BOGUS
        self._hole = (last, seq)
        self.last = seq
        return GAP

    def rebase(self, seq: int) -> int:
        """Take ``seq`` as the current position (a fresh snapshot arrived with it,
        itself taken for a duplicate). Returns how many frames before it were
        taken for duplicates since the last accepted number: the rebase shows the
        reference was wrong, so they were real frames, and they were dropped."""
        dropped = max(0, self._duplicates - 1)
        self.last = seq
        self._duplicates = 0
        self._hole = None
        return dropped

    def reset(self) -> None:
        """Forget the counter: a new connection starts its own."""
        self.last = None
        self._duplicates = 0
        self._hole = None


class BookSync:
    """Whether a product's next event can be applied to the book we hold.

    ``rule`` says how a delta chains onto the book (:func:`chain_exact` for Deribit,
    the Binance rules); without one (Coinbase, whose counter is per connection)
    deltas are only checked for having a snapshot before them. A snapshot
    (or a full top-N refresh) always re-bases the chain on its own id.
    """

    __slots__ = ("rule", "synced", "last", "fresh", "_duplicates")

    def __init__(self, rule: Optional[ChainRule] = None) -> None:
        self.rule = rule
        self.synced = False
        self.last: Optional[int] = None
        self.fresh = False
        self._duplicates = 0

    def check(self, event: BookEvent) -> str:
        """Classify ``event``: OK (apply it), DUPLICATE or STALE (drop it), GAP,
        BOGUS or STUCK (resync), UNSYNCED (no snapshot yet: drop it)."""
        kind = event.kind
        if kind is SNAPSHOT or kind is REFRESH:
            self.synced = True
            self.last = event.seq
            self.fresh = True
            self._duplicates = 0
            return OK
        if not self.synced:
            return UNSYNCED
        rule, seq, prev, last = self.rule, event.seq, event.prev_seq, self.last
        if rule is None or seq is None or prev is None or last is None:
            return OK
        if seq < prev or seq - prev > MAX_JUMP or last - seq > MAX_JUMP:
            self.invalidate()
            return BOGUS
        verdict = rule(event, last, self.fresh)
        if verdict is OK:
            self.last = seq
            self.fresh = False
            self._duplicates = 0
        elif verdict is DUPLICATE:
            self._duplicates += 1
            if self._duplicates >= STUCK_AFTER:
                self.invalidate()
                return STUCK
        elif verdict is GAP:
            self.invalidate()
        return verdict

    def invalidate(self) -> None:
        """Drop everything until the next snapshot (after a gap or a reconnect)."""
        self.synced = False
        self.last = None
        self._duplicates = 0

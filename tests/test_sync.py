"""ConnectionSequence and BookSync classification."""

from state.events import SNAPSHOT, UPDATE, BookEvent
from state.sync import DUPLICATE, GAP, OK, UNSYNCED, BookSync, ConnectionSequence


def snap(seq):
    return BookEvent(SNAPSHOT, "v", "P", None, 0.0, seq, None, [], [])


def upd(seq, prev):
    return BookEvent(UPDATE, "v", "P", None, 0.0, seq, prev, [], [])


# ------------------------------------------------------------------ ConnectionSequence


def test_connection_sequence_contiguous():
    cs = ConnectionSequence()
    assert [cs.check(s) for s in (5, 6, 7, 8)] == [OK, OK, OK, OK]
    assert cs.last == 8


def test_connection_sequence_duplicates_do_not_move_counter():
    cs = ConnectionSequence()
    cs.check(10)
    cs.check(11)
    assert cs.check(11) == DUPLICATE  # equal
    assert cs.check(3) == DUPLICATE  # lower
    assert cs.last == 11
    assert cs.check(12) == OK


def test_connection_sequence_gap_then_continues_from_new_value():
    cs = ConnectionSequence()
    cs.check(1)
    assert cs.check(4) == GAP  # 2 and 3 missing
    assert cs.last == 4
    assert cs.check(5) == OK
    assert cs.check(4) == DUPLICATE


def test_connection_sequence_reset_accepts_any_start():
    cs = ConnectionSequence()
    cs.check(100)
    cs.reset()
    assert cs.last is None
    assert cs.check(1) == OK  # would be DUPLICATE without the reset
    assert cs.check(2) == OK


# ---------------------------------------------------------------------------- BookSync


def test_deltas_before_snapshot_are_unsynced():
    bs = BookSync()
    assert bs.check(upd(5, 4)) == UNSYNCED
    assert bs.check(upd(6, None)) == UNSYNCED
    assert bs.check(upd(None, None)) == UNSYNCED
    assert bs.check(snap(6)) == OK
    assert bs.check(upd(7, 6)) == OK


def test_deribit_chain_ok_then_gap_until_next_snapshot():
    bs = BookSync()
    assert bs.check(snap(100)) == OK
    assert bs.check(upd(105, 100)) == OK  # change ids need not be contiguous, only chained
    assert bs.check(upd(107, 105)) == OK
    assert bs.check(upd(110, 108)) == GAP  # expected prev 107
    # everything after the gap is dropped, even a delta that chains onto 110
    assert bs.check(upd(111, 110)) == UNSYNCED
    assert bs.check(upd(112, 111)) == UNSYNCED
    assert bs.check(upd(113, None)) == UNSYNCED
    assert bs.check(snap(200)) == OK
    assert bs.check(upd(201, 200)) == OK


def test_duplicates_do_not_break_chain():
    bs = BookSync()
    bs.check(snap(100))
    assert bs.check(upd(105, 100)) == OK
    assert bs.check(upd(105, 100)) == DUPLICATE  # same message again
    assert bs.check(upd(103, 99)) == DUPLICATE  # older message
    assert bs.check(upd(100, 98)) == DUPLICATE  # equal to the snapshot id
    assert bs.check(upd(106, 105)) == OK  # chain continues from 105
    assert bs.last == 106


def test_binance_straddling_first_delta_ok_after_snapshot():
    # snapshot lastUpdateId=1000; first delta U=995 u=1003 -> prev_seq = U-1 = 994
    bs = BookSync()
    bs.check(snap(1000))
    assert bs.check(upd(1003, 994)) == OK
    assert bs.check(upd(1010, 1003)) == OK  # U=1004, exact chain


def test_binance_old_deltas_dropped_then_straddle_still_ok():
    bs = BookSync()
    bs.check(snap(1000))
    assert bs.check(upd(990, 980)) == DUPLICATE  # u <= lastUpdateId
    assert bs.check(upd(1000, 990)) == DUPLICATE  # u == lastUpdateId
    assert bs.check(upd(1005, 1000)) == OK  # U-1 = 1000 <= 1000 < u: straddles


def test_binance_straddle_not_allowed_after_first_delta():
    bs = BookSync()
    bs.check(snap(1000))
    assert bs.check(upd(1003, 994)) == OK
    # now last=1003: a delta with prev 1001 < 1003 < 1008 overlaps -> not a valid chain
    assert bs.check(upd(1008, 1001)) == GAP
    assert bs.check(upd(1009, 1008)) == UNSYNCED


def test_binance_first_delta_beyond_snapshot_is_gap():
    # U-1 = 1002 > lastUpdateId 1000: updates 1001..1002 were missed
    bs = BookSync()
    bs.check(snap(1000))
    assert bs.check(upd(1010, 1002)) == GAP


def test_second_snapshot_reenables_straddle():
    bs = BookSync()
    bs.check(snap(1000))
    bs.check(upd(1003, 994))
    bs.check(snap(2000))
    assert bs.check(upd(2004, 1990)) == OK


def test_coinbase_without_prev_seq_ok_once_synced():
    bs = BookSync()
    assert bs.check(upd(5, None)) == UNSYNCED
    assert bs.check(snap(6)) == OK
    assert bs.check(upd(7, None)) == OK
    assert bs.check(upd(9, None)) == OK  # no per-book chain: connection counter checks gaps
    assert bs.check(upd(None, None)) == OK


def test_invalidate_drops_until_snapshot():
    bs = BookSync()
    bs.check(snap(10))
    bs.check(upd(11, 10))
    bs.invalidate()
    assert bs.check(upd(12, 11)) == UNSYNCED
    assert bs.check(snap(50)) == OK
    assert bs.check(upd(51, 50)) == OK

"""ConnectionSequence and BookSync classification, per venue chain rule."""

from hypothesis import given
from hypothesis import strategies as st

from state.events import REFRESH, SNAPSHOT, UPDATE, BookEvent
from state.sync import (BOGUS, DUPLICATE, GAP, MAX_JUMP, OK, STALE, STUCK, STUCK_AFTER, UNSYNCED,
                        BookSync, ConnectionSequence, chain_binance_futures, chain_binance_spot,
                        chain_exact)


def snap(seq):
    return BookEvent(SNAPSHOT, "v", "P", None, 0.0, seq, None, [], [])


def upd(seq, prev, first=None):
    return BookEvent(UPDATE, "v", "P", None, 0.0, seq, prev, [], [], first_seq=first)


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


def test_a_corrupt_huge_number_is_bogus_and_the_next_frame_rebases():
    """Issue #7: sequence_num 2**63 - 1 once must not make every later frame a duplicate."""
    cs = ConnectionSequence()
    cs.check(10)
    assert cs.check(2**63 - 1) == BOGUS
    assert cs.last is None
    assert cs.check(11) == OK  # the real counter goes on
    assert cs.check(12) == OK


def test_a_large_but_plausible_jump_is_a_gap():
    cs = ConnectionSequence()
    cs.check(10)
    assert cs.check(10 + MAX_JUMP) == GAP


def test_a_run_of_duplicates_means_the_reference_is_wrong():
    cs = ConnectionSequence()
    cs.check(1000)
    verdicts = [cs.check(5 + i % 3) for i in range(STUCK_AFTER)]
    assert verdicts[:-1] == [DUPLICATE] * (STUCK_AFTER - 1)
    assert verdicts[-1] == STUCK
    assert cs.check(6) == OK  # re-based


def test_rebase_takes_a_snapshot_frame_number():
    cs = ConnectionSequence()
    cs.check(10**12)
    cs.rebase(7)
    assert cs.check(8) == OK


# ---------------------------------------------------------------------------- BookSync


def test_deltas_before_snapshot_are_unsynced():
    bs = BookSync(chain_exact)
    assert bs.check(upd(5, 4)) == UNSYNCED
    assert bs.check(upd(6, None)) == UNSYNCED
    assert bs.check(upd(None, None)) == UNSYNCED
    assert bs.check(snap(6)) == OK
    assert bs.check(upd(7, 6)) == OK


def test_deribit_chain_ok_then_gap_until_next_snapshot():
    bs = BookSync(chain_exact)
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


def test_deribit_duplicates_do_not_break_chain():
    bs = BookSync(chain_exact)
    bs.check(snap(100))
    assert bs.check(upd(105, 100)) == OK
    assert bs.check(upd(105, 100)) == DUPLICATE  # same message again
    assert bs.check(upd(103, 99)) == DUPLICATE  # older message
    assert bs.check(upd(100, 98)) == DUPLICATE  # equal to the snapshot id
    assert bs.check(upd(106, 105)) == OK  # chain continues from 105
    assert bs.last == 106


def test_deribit_huge_change_id_is_bogus_not_a_frozen_book():
    """Issue #7: the right prev_change_id with change_id 10**18 froze the book."""
    bs = BookSync(chain_exact)
    bs.check(snap(100))
    assert bs.check(upd(10**18, 100)) == BOGUS
    assert not bs.synced
    assert bs.check(snap(150)) == OK  # the resync snapshot re-bases the chain
    assert bs.check(upd(151, 150)) == OK


def test_deribit_a_bogus_but_chained_jump_gets_stuck_then_resyncs():
    bs = BookSync(chain_exact)
    bs.check(snap(100))
    assert bs.check(upd(100 + MAX_JUMP, 100)) == OK  # plausible on its face
    verdicts = [bs.check(upd(101 + i, 100 + i)) for i in range(STUCK_AFTER)]
    assert verdicts[-1] == STUCK and set(verdicts[:-1]) == {DUPLICATE}
    assert not bs.synced


def test_an_id_below_its_predecessor_is_bogus():
    bs = BookSync(chain_exact)
    bs.check(snap(100))
    assert bs.check(upd(90, 100)) == BOGUS


def test_binance_spot_rules():
    # snapshot lastUpdateId=1000; events carry seq=u, prev=U-1
    bs = BookSync(chain_binance_spot)
    bs.check(snap(1000))
    assert bs.check(upd(990, 980)) == STALE  # u <= lastUpdateId
    assert bs.check(upd(1000, 990)) == STALE  # u == lastUpdateId
    assert bs.check(upd(1003, 994)) == OK  # U=995 <= 1001 <= u: straddles
    assert bs.check(upd(1010, 1003)) == OK  # U=1004, exact chain
    assert bs.check(upd(1015, 1008)) == GAP  # a straddle is only allowed first
    assert bs.check(upd(1016, 1015)) == UNSYNCED


def test_binance_spot_first_delta_beyond_snapshot_is_gap():
    bs = BookSync(chain_binance_spot)
    bs.check(snap(1000))
    assert bs.check(upd(1010, 1002)) == GAP  # U=1003 > 1001: 1001..1002 missed


def test_binance_futures_rules():
    # seq=u, prev=pu, first=U
    bs = BookSync(chain_binance_futures)
    bs.check(snap(1000))
    assert bs.check(upd(999, 990, 995)) == STALE  # u < lastUpdateId
    assert bs.check(upd(1000, 999, 996)) == OK  # u == lastUpdateId is kept (not <=)
    assert bs.check(upd(1007, 1000, 1001)) == OK  # pu == previous u
    assert bs.check(upd(1012, 1008, 1009)) == GAP


def test_binance_futures_first_must_straddle():
    bs = BookSync(chain_binance_futures)
    bs.check(snap(1000))
    assert bs.check(upd(1010, 1004, 1005)) == GAP  # U=1005 > lastUpdateId


def test_second_snapshot_reenables_straddle():
    bs = BookSync(chain_binance_spot)
    bs.check(snap(1000))
    bs.check(upd(1003, 994))
    bs.check(snap(2000))
    assert bs.check(upd(2004, 1990)) == OK


def test_refresh_rebases_like_a_snapshot():
    bs = BookSync(chain_exact)
    bs.check(BookEvent(REFRESH, "v", "P", None, 0.0, 7, None, [], []))
    assert bs.synced and bs.last == 7


def test_coinbase_without_chain_ok_once_synced():
    bs = BookSync(None)
    assert bs.check(upd(5, None)) == UNSYNCED
    assert bs.check(snap(6)) == OK
    assert bs.check(upd(7, None)) == OK
    assert bs.check(upd(9, None)) == OK  # no per-book chain: connection counter checks gaps
    assert bs.check(upd(None, None)) == OK


def test_invalidate_drops_until_snapshot():
    bs = BookSync(chain_exact)
    bs.check(snap(10))
    bs.check(upd(11, 10))
    bs.invalidate()
    assert bs.check(upd(12, 11)) == UNSYNCED
    assert bs.check(snap(50)) == OK
    assert bs.check(upd(51, 50)) == OK


@given(st.lists(st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1)), max_size=300),
       st.integers(0, 2**62))
def test_no_sequence_of_numbers_disables_a_book_for_good(events, base):
    """Whatever ids arrive, a fresh snapshot always brings the book back."""
    bs = BookSync(chain_exact)
    bs.check(snap(base))
    for seq, prev in events:
        bs.check(upd(seq, prev))
    assert bs.check(snap(base + 1)) == OK
    assert bs.check(upd(base + 2, base + 1)) == OK

"""ProductState.on_item: records emitted for snapshots, updates, statuses and restores."""

import copy
import pickle
import time

import pytest

from state.events import SNAPSHOT, UPDATE, BookEvent, BookStatus
from state.product import ProductState

V, P = "deribit", "BTC-PERPETUAL"
DEPTH = 5
NO_ALERT = 1e9  # threshold no test book can reach


def snap(bids, asks, ts=1.0, seq=None):
    return BookEvent(SNAPSHOT, V, P, ts - 0.5, ts, seq, None, list(bids), list(asks))


def upd(bids=(), asks=(), ts=2.0, seq=None):
    return BookEvent(UPDATE, V, P, ts - 0.5, ts, seq, None, list(bids), list(asks))


def gap(ts=3.0, reason="gap", detail="prev 7 != last 5"):
    return BookStatus(V, P, ts, "invalid", reason, detail)


def status(state, reason, detail, ts):
    return {"type": "status", "venue": V, "product": P, "ts_recv": ts,
            "state": state, "reason": reason, "detail": detail}


def types(records):
    return [r["type"] for r in records]


BIDS = [(100.0, 2.0), (99.0, 1.0)]
ASKS = [(101.0, 3.0), (102.0, 1.0)]


def synced_state(alert_bps=NO_ALERT):
    st = ProductState()
    st.on_item(snap(BIDS, ASKS), DEPTH, alert_bps)
    return st


# ------------------------------------------------------------------- snapshot / update


def test_first_snapshot_emits_synced_status_then_summary():
    st = ProductState()
    out = st.on_item(snap(BIDS, ASKS, ts=1.0, seq=42), DEPTH, NO_ALERT)
    assert types(out) == ["status", "summary"]
    assert out[0] == status("synced", "snapshot", "2 bids, 2 asks", 1.0)
    s = out[1]
    assert (s["bid_px"], s["bid_sz"], s["ask_px"], s["ask_sz"]) == (100.0, 2.0, 101.0, 3.0)
    assert s["seq"] == 42
    assert s["ofi"] is None
    assert (s["bid_levels"], s["ask_levels"]) == (2, 2)
    assert st.valid is True
    assert st.counts["snapshots"] == 1


def test_update_on_valid_book_emits_one_correct_summary():
    st = synced_state()
    out = st.on_item(upd(bids=[(100.0, 4.0)], ts=2.0), DEPTH, NO_ALERT)
    assert types(out) == ["summary"]
    s = out[0]
    assert (s["bid_px"], s["bid_sz"], s["ask_px"], s["ask_sz"]) == (100.0, 4.0, 101.0, 3.0)
    assert s["ts_recv"] == 2.0
    assert s["spread"] == 1.0
    assert s["mid"] == 100.5
    # microprice = (100*3 + 101*4) / (4 + 3) = 704 / 7
    assert s["microprice"] == pytest.approx(704 / 7, rel=1e-12)
    # imbalance = (4 - 3) / 7
    assert s["imbalance"] == pytest.approx(1 / 7, rel=1e-12)
    # depth 5 covers all: Vb = 4 + 1 = 5, Va = 3 + 1 = 4 -> 1/9
    assert s["depth_imbalance"] == pytest.approx(1 / 9, rel=1e-12)
    # OFI: bid same price +4 -2 ; ask unchanged -3 +3 -> 2
    assert s["ofi"] == 2.0
    assert st.counts["level_changes"] == 1


def test_ofi_chains_across_updates():
    st = synced_state()
    st.on_item(upd(bids=[(100.0, 4.0)]), DEPTH, NO_ALERT)
    # ask improves to 100.5 x 2: bid unchanged (+4 -4), ask down (-2) -> -2
    out = st.on_item(upd(asks=[(100.5, 2.0)]), DEPTH, NO_ALERT)
    assert out[0]["ofi"] == -2.0


def test_update_before_any_snapshot_is_dropped():
    st = ProductState()
    assert st.on_item(upd(bids=[(100.0, 1.0)]), DEPTH, NO_ALERT) == []
    assert st.on_item(upd(asks=[(101.0, 1.0)]), DEPTH, NO_ALERT) == []
    assert st.counts["dropped_invalid"] == 2
    assert len(st.book) == 0


def test_snapshot_while_valid_replaces_book_and_has_no_ofi():
    st = synced_state()
    out = st.on_item(snap([(50.0, 1.0)], [(51.0, 1.0)], ts=5.0), DEPTH, NO_ALERT)
    assert types(out) == ["summary"]  # already synced: no new status
    assert out[0]["ofi"] is None
    assert (out[0]["bid_levels"], out[0]["ask_levels"]) == (1, 1)
    assert dict(st.book.bids) == {50.0: 1.0}


# ------------------------------------------------------------------- crossed / locked


def test_crossing_update_invalidates_until_new_snapshot():
    st = synced_state()
    out = st.on_item(upd(bids=[(101.5, 1.0)], ts=3.0), DEPTH, NO_ALERT)
    assert types(out) == ["alert", "status"]
    assert out[0] == {"type": "alert", "venue": V, "product": P, "ts_recv": 3.0,
                      "kind": "crossed", "spread_bps": None,
                      "detail": "bid 101.5 > ask 101.0"}
    assert out[1] == status("invalid", "crossed", "bid 101.5 > ask 101.0", 3.0)
    assert st.valid is False
    assert st.counts["invalid_crossed"] == 1

    # later deltas, even ones that would uncross the book, are dropped
    assert st.on_item(upd(bids=[(101.5, 0.0)]), DEPTH, NO_ALERT) == []
    assert st.on_item(upd(asks=[(105.0, 1.0)]), DEPTH, NO_ALERT) == []
    assert st.counts["dropped_invalid"] == 2

    out = st.on_item(snap([(90.0, 1.0)], [(91.0, 2.0)], ts=4.0), DEPTH, NO_ALERT)
    assert types(out) == ["status", "summary"]
    assert out[0] == status("synced", "snapshot", "1 bids, 1 asks", 4.0)
    s = out[1]
    # only the new levels: nothing of 100/99/101/102/101.5/105 survives
    assert (s["bid_px"], s["bid_sz"], s["ask_px"], s["ask_sz"]) == (90.0, 1.0, 91.0, 2.0)
    assert (s["bid_levels"], s["ask_levels"]) == (1, 1)
    assert s["ofi"] is None
    assert dict(st.book.bids) == {90.0: 1.0}
    assert dict(st.book.asks) == {91.0: 2.0}


def test_locked_update_invalidates_with_reason_locked():
    st = synced_state()
    out = st.on_item(upd(asks=[(100.0, 1.0)], ts=3.0), DEPTH, NO_ALERT)
    assert types(out) == ["alert", "status"]
    assert out[0]["kind"] == "locked"
    assert out[0]["detail"] == "bid 100.0 = ask 100.0"
    assert out[1] == status("invalid", "locked", "bid 100.0 = ask 100.0", 3.0)
    assert st.counts["invalid_locked"] == 1
    assert st.on_item(upd(asks=[(100.0, 0.0)]), DEPTH, NO_ALERT) == []
    out = st.on_item(snap(BIDS, ASKS, ts=4.0), DEPTH, NO_ALERT)
    assert types(out) == ["status", "summary"]
    assert out[1]["ask_px"] == 101.0


def test_crossed_snapshot_is_rejected():
    st = ProductState()
    out = st.on_item(snap([(10.0, 1.0)], [(9.0, 1.0)], ts=1.0), DEPTH, NO_ALERT)
    assert types(out) == ["alert", "status"]
    assert out[1]["reason"] == "crossed"
    assert st.valid is False
    assert len(st.book) == 0


# --------------------------------------------------------------------------- spread alert

ALERT_BPS = 50.0


def test_spread_alert_is_edge_triggered():
    st = ProductState()
    # bid 100, ask 100.25: spread 0.25, mid 100.125 -> 0.25/100.125*1e4 = 24.97 bps (< 50)
    out = st.on_item(snap([(100.0, 1.0)], [(100.25, 1.0), (101.0, 1.0)]), DEPTH, ALERT_BPS)
    assert types(out) == ["status", "summary"]
    assert out[1]["spread_bps"] == pytest.approx(24.968789013732835, rel=1e-12)

    # ask 100.25 removed: spread 1, mid 100.5 -> 99.50 bps (> 50): one alert
    out = st.on_item(upd(asks=[(100.25, 0.0)], ts=2.0), DEPTH, ALERT_BPS)
    assert types(out) == ["summary", "alert"]
    alert = out[1]
    assert alert["kind"] == "spread"
    assert alert["ts_recv"] == 2.0
    assert alert["spread_bps"] == pytest.approx(99.50248756218906, rel=1e-12)
    assert alert["detail"] == "spread 99.50 bps > 50 bps (bid 100.0 ask 101.0)"

    # still wide (size changes only): no further alerts
    assert types(st.on_item(upd(bids=[(100.0, 3.0)]), DEPTH, ALERT_BPS)) == ["summary"]
    assert types(st.on_item(upd(asks=[(101.0, 2.0)]), DEPTH, ALERT_BPS)) == ["summary"]

    # back below: no alert
    assert types(st.on_item(upd(asks=[(100.25, 1.0)]), DEPTH, ALERT_BPS)) == ["summary"]
    # above again: a new alert
    out = st.on_item(upd(asks=[(100.25, 0.0)]), DEPTH, ALERT_BPS)
    assert types(out) == ["summary", "alert"]
    assert out[1]["kind"] == "spread"


def test_spread_alert_on_first_snapshot_follows_status_and_summary():
    st = ProductState()
    out = st.on_item(snap(BIDS, ASKS), DEPTH, ALERT_BPS)  # 99.50 bps > 50
    assert types(out) == ["status", "summary", "alert"]


def test_spread_alert_rearms_after_invalidation():
    st = synced_state(ALERT_BPS)  # wide from the start (99.50 bps)
    st.on_item(gap(), DEPTH, ALERT_BPS)
    out = st.on_item(snap(BIDS, ASKS), DEPTH, ALERT_BPS)
    assert types(out) == ["status", "summary", "alert"]


# ---------------------------------------------------------------------- source statuses


def test_gap_status_reported_once_per_outage():
    st = synced_state()
    out = st.on_item(gap(ts=3.0), DEPTH, NO_ALERT)
    assert out == [status("invalid", "gap", "prev 7 != last 5", 3.0)]
    assert st.valid is False
    assert len(st.book) == 0
    # repeated statuses while invalid produce nothing
    assert st.on_item(gap(ts=3.1), DEPTH, NO_ALERT) == []
    assert st.on_item(gap(ts=3.2, reason="disconnected", detail="eof"), DEPTH, NO_ALERT) == []
    assert st.counts["invalid_gap"] == 2
    assert st.counts["invalid_disconnected"] == 1
    assert st.on_item(upd(bids=[(100.0, 9.0)]), DEPTH, NO_ALERT) == []
    out = st.on_item(snap(BIDS, ASKS, ts=5.0), DEPTH, NO_ALERT)
    assert types(out) == ["status", "summary"]
    # after recovery, the next gap is reported again
    assert len(st.on_item(gap(ts=6.0), DEPTH, NO_ALERT)) == 1


def test_gap_status_before_first_snapshot_is_silent():
    st = ProductState()
    assert st.on_item(gap(), DEPTH, NO_ALERT) == []


# ------------------------------------------------------------------ snapshot / restore


def _busy_state():
    st = synced_state()
    st.on_item(upd(bids=[(100.0, 4.0)]), DEPTH, NO_ALERT)
    st.on_item(upd(asks=[(101.0, 0.0)]), DEPTH, NO_ALERT)
    return st


@pytest.mark.parametrize("restore", [
    copy.deepcopy,
    lambda s: pickle.loads(pickle.dumps(s)),
], ids=["deepcopy", "pickle"])
def test_restore_drops_book_keeps_counters(restore):
    st = _busy_state()
    counts_before = dict(st.counts)
    # snapshots=1, updates=3 (snapshot counts as one), level_changes=2
    assert counts_before == {"snapshots": 1, "updates": 3, "level_changes": 2}

    clone = restore(st)
    assert clone.valid is False
    assert len(clone.book) == 0
    assert dict(clone.counts) == counts_before
    # the original is untouched
    assert st.valid is True
    assert dict(st.book.asks) == {102.0: 1.0}

    # the restored state emits nothing until a snapshot
    assert clone.on_item(upd(bids=[(100.0, 1.0)]), DEPTH, NO_ALERT) == []
    assert clone.counts["dropped_invalid"] == 1
    assert "dropped_invalid" not in st.counts  # counters are not shared
    out = clone.on_item(snap([(10.0, 1.0)], [(11.0, 1.0)], ts=7.0), DEPTH, NO_ALERT)
    assert types(out) == ["status", "summary"]
    assert out[1]["bid_levels"] == 1 and out[1]["ask_levels"] == 1



def test_deepcopy_of_large_book_is_cheap():
    st = ProductState()
    n = 23_000
    bids = [(10_000.0 - i * 0.01, 1.0) for i in range(n)]
    asks = [(10_000.5 + i * 0.01, 1.0) for i in range(n)]
    st.on_item(snap(bids, asks), DEPTH, NO_ALERT)
    assert len(st.book) == 46_000
    t0 = time.perf_counter()
    clone = copy.deepcopy(st)
    elapsed = time.perf_counter() - t0
    assert len(clone.book) == 0
    assert elapsed < 0.05, f"deepcopy took {elapsed * 1e3:.1f} ms"

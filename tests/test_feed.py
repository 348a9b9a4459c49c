"""sources.feed.feed.Feed: sequence checks, resubscription and error handling on real recordings."""

import logging
from collections import Counter
from pathlib import Path

import orjson
import pytest

from sources.venues import coinbase
from sources.capture.format import read_capture
from sources.feed.feed import Feed
from sources.feed.reporting import BadInput
from sources.venues import get_venue
from state.book import OrderBook
from state.events import SNAPSHOT, UPDATE, BookEvent, BookStatus

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
BTC, ETH = "coinbase:BTC-USD", "coinbase:ETH-USD"


@pytest.fixture(scope="module")
def cb_frames():
    """``(ts, msg)`` of the Coinbase Advanced Trade recording's received frames."""
    return [(f.ts, f.msg) for f in read_capture(RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz")
            if f.dir == "recv"]


def on_message(feed, msg, ts, out):
    _run(feed, [(ts, msg)], out)


def _run(feed, frames, out=None):
    """Feed frames; keep what concerns books (trades and tickers pass through the
    feed untouched and are tested with the trade path)."""
    out = [] if out is None else out
    for ts, msg in frames:
        got = []
        feed.on_frame(orjson.dumps(msg), ts, got)
        out.extend(item for item in got if isinstance(item[1], (BookEvent, BookStatus)))
    return out


def _renumber(frames, start):
    """Frames with ``sequence_num`` rewritten to run contiguously from ``start``."""
    return [(ts, dict(msg, sequence_num=start + i)) for i, (ts, msg) in enumerate(frames)]


def _statuses(out):
    return [(k, s) for k, s in out if isinstance(s, BookStatus)]


def _events(out):
    return [(k, e) for k, e in out if isinstance(e, BookEvent)]


def _is_l2(msg, kind=None, product=None):
    if msg.get("channel") != "l2_data":
        return False
    ev = msg["events"][0]
    return (kind is None or ev["type"] == kind) and (product is None or ev["product_id"] == product)


def _cb_feed(products=None):
    return Feed(get_venue("coinbase"), products, BadInput())


# ------------------------------------------------------------------ Coinbase recording


@pytest.mark.parametrize("products", [None, ["BTC-USD", "ETH-USD"]], ids=["replay", "fixed"])
def test_whole_coinbase_recording(cb_frames, products):
    feed = _cb_feed(products)
    out = _run(feed, cb_frames)
    assert _statuses(out) == []
    assert feed.counts["gaps"] == 0 and feed.counts["duplicates"] == 0
    assert (feed.counts["snapshots"], feed.counts["updates"]) == (2, 773)
    assert feed.counts["frames"] == 1030
    assert feed.outbox == []
    assert Counter(k for k, _ in out) == {BTC: 400, ETH: 375}
    assert all(k == f"coinbase:{e.product}" for k, e in out)
    firsts = {}
    for k, e in out:
        firsts.setdefault(k, e.kind)
    assert firsts == {BTC: SNAPSHOT, ETH: SNAPSHOT}
    book = OrderBook()
    for k, e in out:
        if k == BTC:
            book.replace(e.bids, e.asks) if e.kind == SNAPSHOT else book.apply(e.bids, e.asks)
    assert book.best_bid()[0] == 65083.66
    assert book.best_ask()[0] == 65083.67


def test_fixed_products_count_other_products_as_unexpected(cb_frames):
    feed = _cb_feed(["BTC-USD"])
    out = _run(feed, cb_frames)
    assert Counter(k for k, _ in out) == {BTC: 400}
    # ETH-USD's book events, trades and tickers: counted, never emitted
    assert feed.counts["unexpected_product"] == 375 + 139 + 80
    assert feed.counts["gaps"] == 0


def test_dropped_frame_gaps_every_product_on_the_connection(cb_frames):
    drop = 100
    assert _is_l2(cb_frames[drop][1], UPDATE, "BTC-USD")
    frames = cb_frames[:drop] + cb_frames[drop + 1:]
    feed = _cb_feed()
    out = _run(feed, frames)
    statuses = _statuses(out)
    assert [(k, s.state, s.reason, s.detail) for k, s in statuses] == [
        (BTC, "invalid", "gap", "sequence_num jumped from 99 to 101"),
        (ETH, "invalid", "gap", "sequence_num jumped from 99 to 101"),
    ]
    assert statuses[0][1].ts_recv == cb_frames[drop + 1][0]
    assert feed.outbox == coinbase.CoinbaseProtocol({}).resubscribe("BTC-USD") + coinbase.CoinbaseProtocol({}).resubscribe("ETH-USD")
    # nothing from either book after the gap: no snapshot comes in a recording
    gap_at = out.index(statuses[0])
    assert _events(out[gap_at:]) == []
    later_updates = sum(1 for _, m in cb_frames[drop + 1:] if _is_l2(m, UPDATE))
    assert feed.counts["dropped_unsynced"] == later_updates
    assert feed.counts["updates"] == 773 - 1 - later_updates
    assert (feed.counts["gaps"], feed.counts["resyncs"]) == (2, 2)


def test_updates_resume_after_the_next_snapshot(cb_frames):
    drop, resnap = 100, 500
    snap = next(m for _, m in cb_frames if _is_l2(m, SNAPSHOT, "BTC-USD"))
    frames = (cb_frames[:drop]
              + _renumber(cb_frames[drop + 1:resnap] + [(cb_frames[resnap][0], snap)]
                          + cb_frames[resnap:], drop + 1))
    feed = _cb_feed()
    out = _run(feed, frames)
    assert len(_statuses(out)) == 2
    after = [(k, e.kind) for k, e in out[out.index(_statuses(out)[-1]) + 1:]]
    btc_later = sum(1 for _, m in cb_frames[resnap:] if _is_l2(m, UPDATE, "BTC-USD"))
    assert after == [(BTC, SNAPSHOT)] + [(BTC, UPDATE)] * btc_later
    assert feed.counts["dropped_unsynced"] == sum(
        1 for _, m in cb_frames[drop + 1:resnap] if _is_l2(m, UPDATE)) + sum(
        1 for _, m in cb_frames[resnap:] if _is_l2(m, UPDATE, "ETH-USD"))


def test_duplicated_frame_is_counted_not_emitted(cb_frames):
    dup = 200
    assert _is_l2(cb_frames[dup][1], UPDATE)
    feed = _cb_feed()
    out = _run(feed, cb_frames[:dup + 1] + [cb_frames[dup]] + cb_frames[dup + 1:])
    baseline = _run(_cb_feed(), cb_frames)
    assert feed.counts["duplicates"] == 1
    assert feed.counts["gaps"] == 0
    assert out == baseline
    assert len(out) == 775


def test_unknown_channel_frame_does_not_look_like_a_gap(cb_frames):
    at = 40
    frames = list(cb_frames)
    frames[at] = (frames[at][0], dict(frames[at][1], channel="futures_balance_summary"))
    bad = BadInput()
    feed = Feed(get_venue("coinbase"), None, bad)
    out = _run(feed, frames)
    assert bad.counts[("coinbase", "unknown_type")] == 1
    assert _statuses(out) == []
    assert feed.counts["gaps"] == 0
    expected = 775 - (1 if _is_l2(cb_frames[at][1]) else 0)
    assert len(out) == expected


def test_bad_level_on_synced_product_resubscribes_only_that_product(cb_frames):
    at = 30  # both snapshots (seq 13 and 21) are in
    broken = {"channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.7Z",
              "sequence_num": at, "events": [{"type": "update", "product_id": "BTC-USD", "updates": [
                  {"side": "bid", "event_time": "2026-08-09T21:05:48.7Z",
                   "price_level": "65000", "new_quantity": "-0.5"}]}]}
    bad = BadInput()
    feed = Feed(get_venue("coinbase"), ["BTC-USD", "ETH-USD"], bad)
    frames = cb_frames[:at] + [(cb_frames[at][0], broken)] + _renumber(cb_frames[at:], at + 1)
    out = _run(feed, frames)
    statuses = _statuses(out)
    assert [(k, s.reason) for k, s in statuses] == [(BTC, "bad_input")]
    assert statuses[0][1].detail.startswith("bad_level: ")
    assert feed.outbox == coinbase.CoinbaseProtocol({}).resubscribe("BTC-USD")
    assert bad.counts[("coinbase", "bad_level")] == 1
    assert feed.counts["invalid_bad_input"] == 1 and feed.counts["resyncs"] == 1
    after = Counter(k for k, _ in out[out.index(statuses[0]):] if k == ETH)
    assert after[ETH] == sum(1 for _, m in cb_frames[at:] if _is_l2(m, UPDATE, "ETH-USD"))
    assert BTC not in {k for k, _ in _events(out[out.index(statuses[0]):])}


def test_bad_level_before_snapshot_only_advances_the_counter(cb_frames):
    at = 15  # ETH snapshot comes at seq 21
    broken = {"channel": "l2_data", "sequence_num": at, "timestamp": "2026-08-09T21:05:48.5Z",
              "events": [{"type": "update", "product_id": "ETH-USD", "updates": [
                  {"side": "bid", "event_time": "2026-08-09T21:05:48.5Z",
                   "price_level": "1900", "new_quantity": "x"}]}]}
    feed = _cb_feed(["BTC-USD", "ETH-USD"])
    out = _run(feed, cb_frames[:at] + [(cb_frames[at][0], broken)] + _renumber(cb_frames[at:], at + 1))
    assert _statuses(out) == []
    assert feed.outbox == []
    assert len(out) == 775


def test_malformed_json_is_counted_and_logged_once(caplog):
    bad = BadInput()
    feed = Feed(get_venue("coinbase"), ["BTC-USD"], bad)
    out = []
    with caplog.at_level(logging.WARNING, logger="lobstream.input"):
        for raw in (b'{"channel": "l2_data", "seq', "not json at all", b"\xff\xfe"):
            feed.on_frame(raw, 1.0, out)
    assert out == []
    assert bad.counts[("coinbase", "malformed")] == 3
    assert feed.counts["frames"] == 3
    records = [r for r in caplog.records if r.name == "lobstream.input"]
    assert len(records) == 1
    assert "malformed" in records[0].getMessage()
    assert '{"channel": "l2_data", "seq' in records[0].getMessage()


def test_connected_resets_counter_and_invalidates_books(cb_frames):
    feed = _cb_feed(["BTC-USD", "ETH-USD"])
    out = _run(feed, cb_frames[:40])
    assert all(s.sync.synced for s in feed.books.values())
    msgs = feed.connected(0.0)
    assert msgs == coinbase.CoinbaseProtocol({}).open(["BTC-USD", "ETH-USD"])
    assert feed.conn_seq.last is None
    assert not any(s.sync.synced for s in feed.books.values())
    assert feed.counts["connects"] == 1
    n = len(out)
    upd = next(m for _, m in cb_frames if _is_l2(m, UPDATE, "BTC-USD"))
    snap = next(m for _, m in cb_frames if _is_l2(m, SNAPSHOT, "BTC-USD"))
    _run(feed, [(9.0, dict(upd, sequence_num=0))], out)  # a new connection counts from 0
    assert out[n:] == []
    assert feed.counts["duplicates"] == 0 and feed.counts["dropped_unsynced"] == 1
    _run(feed, [(10.0, dict(snap, sequence_num=1)), (11.0, dict(upd, sequence_num=2))], out)
    assert [(k, e.kind) for k, e in out[n:]] == [(BTC, SNAPSHOT), (BTC, UPDATE)]
    assert _statuses(out) == []


def test_disconnected_reports_each_synced_book_once(cb_frames):
    feed = _cb_feed(["BTC-USD", "ETH-USD", "SOL-USD"])
    _run(feed, cb_frames[:25])
    out = feed.disconnected(123.0, "connection closed")
    assert [(k, s) for k, s in out] == [
        (BTC, BookStatus("coinbase", "BTC-USD", 123.0, "invalid", "disconnected", "connection closed")),
        (ETH, BookStatus("coinbase", "ETH-USD", 123.0, "invalid", "disconnected", "connection closed")),
    ]
    assert feed.disconnected(124.0, "again") == []


# ------------------------------------------------------------------ Deribit


T0 = 1_600_000_000_000  # a plausible exchange time (2020-09-13) for synthetic frames


DERIBIT_BOOKS = {"trades": False, "tickers": False}


def _deribit_frames(name):
    return [(f.ts, f.msg) for f in read_capture(RECORDINGS / name) if f.dir == "recv"]


def _change(inst, prev, change, bids=(("new", 100.0, 1.0),), ts=1.0):
    return (ts, {"jsonrpc": "2.0", "method": "subscription",
                 "params": {"channel": f"book.{inst}.100ms",
                            "data": {"type": "change", "timestamp": T0 + ts, "instrument_name": inst,
                                     "prev_change_id": prev, "change_id": change,
                                     "bids": [list(b) for b in bids], "asks": []}}})


def _snapshot(inst, change, ts=1.0):
    return (ts, {"jsonrpc": "2.0", "method": "subscription",
                 "params": {"channel": f"book.{inst}.100ms",
                            "data": {"type": "snapshot", "timestamp": T0 + ts, "instrument_name": inst,
                                     "change_id": change, "bids": [["new", 99.0, 1.0]],
                                     "asks": [["new", 101.0, 1.0]]}}})


@pytest.mark.parametrize("products", [None, ["BTC-PERPETUAL"]], ids=["replay", "fixed"])
def test_deribit_gap_fixture(products):
    frames = _deribit_frames("deribit_gap.jsonl")
    feed = Feed(get_venue("deribit"), products, BadInput())
    out = _run(feed, frames + [_change("BTC-PERPETUAL", 4095205464, 4095205465, ts=frames[-1][0] + 1)])
    key = "deribit:BTC-PERPETUAL"
    assert [(k, e.kind, e.seq) for k, e in _events(out)] == [
        (key, SNAPSHOT, 4095205325), (key, UPDATE, 4095205460),
        (key, UPDATE, 4095205461), (key, UPDATE, 4095205462)]
    assert _statuses(out) == [(key, BookStatus(
        "deribit", "BTC-PERPETUAL", frames[-1][0], "invalid", "gap",
        "update 4095205463->4095205464 does not follow 4095205462"))]
    assert feed.counts["dropped_unsynced"] == 1
    assert feed.counts["gaps"] == 1
    assert [(m["method"], m["params"]) for m in feed.outbox] == [
        ("public/unsubscribe", {"channels": ["book.BTC-PERPETUAL.100ms"]}),
        ("public/subscribe", {"channels": ["book.BTC-PERPETUAL.100ms"]})]


def test_deribit_resubscribe_uses_configured_interval():
    feed = Feed(get_venue("deribit"), None, BadInput(), settings={"interval": "agg2"})
    _run(feed, _deribit_frames("deribit_gap.jsonl"))
    assert [m["params"]["channels"] for m in feed.outbox] == [["book.BTC-PERPETUAL.agg2"]] * 2


def test_deribit_duplicate_change_is_counted():
    feed = Feed(get_venue("deribit"), None, BadInput())
    out = _run(feed, [_snapshot("BTC-PERPETUAL", 10), _change("BTC-PERPETUAL", 10, 11),
                      _change("BTC-PERPETUAL", 10, 11), _change("BTC-PERPETUAL", 11, 12)])
    assert [e.seq for _, e in out] == [10, 11, 12]
    assert feed.counts["duplicates"] == 1 and feed.counts["gaps"] == 0


def test_deribit_options_recording():
    feed = Feed(get_venue("deribit"), None, BadInput())
    out = _run(feed, _deribit_frames("deribit_options.jsonl.gz"))
    assert (feed.counts["snapshots"], feed.counts["updates"], feed.counts["gaps"]) == (10, 177, 0)
    assert _statuses(out) == []
    assert len({k for k, _ in out}) == 10
    assert all(k.startswith("deribit:") for k, _ in out)
    assert feed.outbox == []


def test_test_request_is_answered():
    feed = Feed(get_venue("deribit"), ["BTC-PERPETUAL"], BadInput())
    out = []
    on_message(feed, {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}}, 1.0, out)
    assert feed.outbox == []
    on_message(feed, {"jsonrpc": "2.0", "method": "heartbeat",
                     "params": {"type": "test_request"}}, 2.0, out)
    assert out == []
    assert len(feed.outbox) == 1
    assert (feed.outbox[0]["method"], feed.outbox[0]["params"]) == ("public/test", {})


def _error(ref, code, message):
    return {"jsonrpc": "2.0", "id": ref, "error": {"code": code, "message": message},
            "testnet": False, "usIn": 1, "usOut": 2, "usDiff": 1}


def _feed_logs(caplog):
    return [r for r in caplog.records if r.name == "lobstream.feed"]


def test_refused_subscription_concerns_exactly_its_products(caplog):
    products = ["BTC-PERPETUAL", "ETH-PERPETUAL"]
    feed = Feed(get_venue("deribit"), products, BadInput(), settings=DERIBIT_BOOKS)
    hb, sub = feed.connected(0.0)
    assert hb["method"] == "public/set_heartbeat"
    assert sub["params"]["channels"] == ["book.BTC-PERPETUAL.100ms", "book.ETH-PERPETUAL.100ms"]
    out = []
    on_message(feed, {"jsonrpc": "2.0", "id": hb["id"], "result": "ok"}, 1.0, out)
    on_message(feed, {"jsonrpc": "2.0", "id": sub["id"], "result": sub["params"]["channels"]}, 1.0, out)
    _run(feed, [_snapshot("BTC-PERPETUAL", 10), _snapshot("ETH-PERPETUAL", 20)], out)
    out.clear()
    feed.resync("BTC-PERPETUAL", 2.0, "crossed", "bid 101 > ask 100", out)
    assert [(k, s.reason) for k, s in out] == [("deribit:BTC-PERPETUAL", "crossed")]
    unsub, resub = feed.outbox
    assert resub["params"]["channels"] == ["book.BTC-PERPETUAL.100ms"]
    feed.outbox.clear()
    out.clear()
    with caplog.at_level(logging.INFO, logger="lobstream.feed"):
        on_message(feed, _error(resub["id"], 13778,
                               "raw_subscriptions_not_available_for_unauthorized"), 3.0, out)
    assert out == [("deribit:BTC-PERPETUAL", BookStatus(
        "deribit", "BTC-PERPETUAL", 3.0, "invalid", "refused",
        "13778 raw_subscriptions_not_available_for_unauthorized"))]
    logs = _feed_logs(caplog)
    assert len(logs) == 1 and logs[0].levelno == logging.ERROR
    assert "BTC-PERPETUAL" in logs[0].getMessage() and "ETH-PERPETUAL" not in logs[0].getMessage()
    assert "100ms" in logs[0].getMessage()
    assert feed.refused == {"BTC-PERPETUAL": "13778 raw_subscriptions_not_available_for_unauthorized"}
    assert feed.counts["errors"] == 1
    # ETH is untouched and keeps flowing
    out.clear()
    _run(feed, [_change("ETH-PERPETUAL", 20, 21)], out)
    assert [(k, e.seq) for k, e in out] == [("deribit:ETH-PERPETUAL", 21)]
    # later gaps do not resubscribe the refused product ...
    out.clear()
    feed.resync("BTC-PERPETUAL", 4.0, "gap", "x", out)
    assert feed.outbox == []
    feed.resync("ETH-PERPETUAL", 4.0, "gap", "x", out)
    assert [m["params"]["channels"] for m in feed.outbox] == [["book.ETH-PERPETUAL.100ms"]] * 2
    # ... and a new connection does not subscribe it
    hb2, sub2 = feed.connected(0.0)
    assert sub2["params"]["channels"] == ["book.ETH-PERPETUAL.100ms"]


def test_refused_initial_subscribe_refuses_all_its_products(caplog):
    feed = Feed(get_venue("deribit"), ["BTC-PERPETUAL", "ETH-PERPETUAL"], BadInput())
    hb, sub = feed.connected(0.0)
    out = []
    with caplog.at_level(logging.INFO, logger="lobstream.feed"):
        on_message(feed, _error(hb["id"], 10028, "too_many_requests"), 1.0, out)
        assert out == []  # set_heartbeat concerns no book
        on_message(feed, {"jsonrpc": "2.0", "id": sub["id"],
                         "error": {"code": -32602, "message": "Invalid params",
                                   "data": {"reason": "wrong format", "param": "channels"}}}, 2.0, out)
    assert [(k, s.reason) for k, s in out] == [("deribit:BTC-PERPETUAL", "refused"),
                                                ("deribit:ETH-PERPETUAL", "refused")]
    logs = _feed_logs(caplog)
    assert len(logs) == 2
    assert "check the instrument names" in logs[1].getMessage()
    assert "100ms" not in logs[1].getMessage()
    assert feed.connected(0.0) == []


def _deribit_book(change_id, prev=None, bid_size=1.0):
    data = {"instrument_name": "BTC-PERPETUAL", "timestamp": T0, "change_id": change_id,
            "bids": [["new", 100.0, bid_size]], "asks": [["new", 101.0, 1.0]]}
    if prev is not None:
        data["prev_change_id"] = prev
    return {"jsonrpc": "2.0", "method": "subscription",
            "params": {"channel": "book.BTC-PERPETUAL.100ms", "data": data}}


def test_broken_snapshot_resubscribes_once_despite_updates_in_flight():
    """The confirmed subscription's snapshot is broken, so the feed resubscribes.
    Updates the server sent before it saw that are not a second lost snapshot:
    only the new confirmation says the snapshot comes next."""
    feed = Feed(get_venue("deribit"), ["BTC-PERPETUAL"], BadInput())
    subscribe = [m for m in feed.connected(0.0) if m["method"] == "public/subscribe"][0]
    out = []
    on_message(feed, {"jsonrpc": "2.0", "id": subscribe["id"], "result": ["book.BTC-PERPETUAL.100ms"]},
                    1.0, out)
    on_message(feed, _deribit_book(10, bid_size=-1.0), 2.0, out)  # broken snapshot
    assert [s.reason for _, s in _statuses(out)] == ["bad_input"]
    resubscribe = feed.outbox
    assert [m["method"] for m in resubscribe] == ["public/unsubscribe", "public/subscribe"]
    feed.outbox = []
    on_message(feed, _deribit_book(11, prev=10), 3.0, out)  # already on the wire
    assert feed.outbox == [] and feed.counts["resyncs"] == 1
    on_message(feed, {"jsonrpc": "2.0", "id": resubscribe[1]["id"],
                     "result": ["book.BTC-PERPETUAL.100ms"]}, 4.0, out)
    on_message(feed, _deribit_book(11), 5.0, out)  # the fresh snapshot
    on_message(feed, _deribit_book(12, prev=11), 6.0, out)
    assert [e.kind for _, e in _events(out)] == [SNAPSHOT, UPDATE]
    assert feed.counts["resyncs"] == 1 and feed.outbox == []


def test_lost_snapshot_of_a_confirmed_subscription_resubscribes_at_once():
    """The subscription was confirmed, then an update came where its snapshot should
    have: the snapshot was lost, and the feed subscribes again right away instead
    of waiting for the snapshot retry timeout."""
    feed = Feed(get_venue("deribit"), ["BTC-PERPETUAL"], BadInput())
    subscribe = [m for m in feed.connected(0.0) if m["method"] == "public/subscribe"][0]
    out = []
    on_message(feed, {"jsonrpc": "2.0", "id": subscribe["id"], "result": ["book.BTC-PERPETUAL.100ms"]},
               1.0, out)
    on_message(feed, _deribit_book(11, prev=10), 2.0, out)  # the snapshot (10) never came
    assert [(s.reason, s.detail) for _, s in _statuses(out)] == [
        ("gap", "change 11 arrived where the snapshot should have")]
    assert [m["method"] for m in feed.outbox] == ["public/unsubscribe", "public/subscribe"]
    assert (feed.counts["gaps"], feed.counts["resyncs"]) == (1, 1)

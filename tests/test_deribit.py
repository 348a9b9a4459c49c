"""Deribit JSON-RPC parser (sources.venues.deribit) on the bundled real recordings."""

from collections import Counter
from pathlib import Path

import orjson
import pytest

from sources.venues import deribit
from sources.capture.format import read_capture
from sources.venues.base import (BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, TEST_REQUEST, TICKER,
                                 TRADES, FrameError, Reply)
from state.events import REFRESH, SNAPSHOT, UPDATE


def parse(msg, ts):
    """The venue parser on the frame's bytes, as the feed calls it."""
    return deribit.parse(orjson.dumps(msg), ts)

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
OPTIONS = RECORDINGS / "deribit_options.jsonl.gz"
GAP = RECORDINGS / "deribit_gap.jsonl"


def _recv(path):
    return [f for f in read_capture(path) if f.dir == "recv"]


def _note(data, channel="book.BTC-PERPETUAL.100ms"):
    return {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}


def _change(bids=(), asks=(), prev=10, change=11, inst="BTC-PERPETUAL"):
    return _note({"type": "change", "timestamp": 1592820072343, "prev_change_id": prev,
                  "instrument_name": inst, "change_id": change,
                  "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]})


# ------------------------------------------------------------------ recordings


def test_gap_fixture_snapshot_without_type_field():
    frames = _recv(GAP)
    parsed = [parse(f.msg, f.ts) for f in frames]
    assert [p.kind for p in parsed] == [REPLY, BOOK, BOOK, BOOK, BOOK, BOOK]
    assert parsed[0].ref == 1
    snap_data = frames[1].msg["params"]["data"]
    assert "type" not in snap_data and "prev_change_id" not in snap_data
    (snap,) = parsed[1].events
    assert snap.kind == SNAPSHOT
    assert (snap.venue, snap.product) == ("deribit", "BTC-PERPETUAL")
    assert (snap.seq, snap.prev_seq) == (4095205325, None)
    assert (len(snap.bids), len(snap.asks)) == (371, 305)
    assert snap.bids[0] == (9415.5, 72300.0) and snap.asks[0] == (9416.0, 534910.0)
    assert snap.ts_exchange == 1592820067334.0
    assert snap.ts_recv == frames[1].ts
    chain = [(p.events[0].kind, p.events[0].prev_seq, p.events[0].seq) for p in parsed[2:]]
    assert chain == [(UPDATE, 4095205325, 4095205460), (UPDATE, 4095205460, 4095205461),
                     (UPDATE, 4095205461, 4095205462), (UPDATE, 4095205463, 4095205464)]
    first = parsed[2].events[0]
    assert first.bids == [(9411.0, 0.0), (9415.5, 126130.0)] and first.asks == []
    assert all(p.seq is None for p in parsed)


def test_options_recording_kinds_and_chains():
    frames = _recv(OPTIONS)
    parsed = [parse(f.msg, f.ts) for f in frames]
    assert Counter(p.kind for p in parsed) == {BOOK: 187, TICKER: 273, REPLY: 1}
    tickers = [e for p in parsed if p.kind == TICKER for e in p.events]
    assert all(t.mark is not None and t.index is not None for t in tickers)
    events = [e for p in parsed if p.kind == BOOK for e in p.events]
    assert Counter(e.kind for e in events) == {SNAPSHOT: 10, UPDATE: 177}
    assert len({e.product for e in events}) == 10
    last = {}
    for e in events:
        if e.kind == SNAPSHOT:
            assert e.prev_seq is None and e.product not in last
        else:
            assert e.prev_seq == last[e.product]
        last[e.product] = e.seq
    # every recorded delete comes out as a removed level, every other entry as its amount
    n_deletes = 0
    for f, p in zip(frames, parsed):
        if p.kind != BOOK:
            continue
        data = f.msg["params"]["data"]
        (ev,) = p.events
        for side, levels in (("bids", ev.bids), ("asks", ev.asks)):
            expected = [(float(px), 0.0 if act == "delete" else float(amt))
                        for act, px, amt in data[side]]
            assert levels == expected
            n_deletes += sum(1 for x in data[side] if x[0] == "delete")
    assert n_deletes == 138


# ------------------------------------------------------------------ book messages


def test_delete_is_size_zero_whatever_the_amount():
    (ev,) = parse(_change(bids=[("delete", 100.5, 7.0), ("new", 100.0, 3)],
                                  asks=[("change", 101.0, 2.5)]), 5.0).events
    assert ev.kind == UPDATE
    assert ev.bids == [(100.5, 0.0), (100.0, 3.0)]
    assert ev.asks == [(101.0, 2.5)]
    assert (ev.seq, ev.prev_seq, ev.ts_recv, ev.ts_exchange) == (11, 10, 5.0, 1592820072343.0)


def test_typed_snapshot_without_prev_is_snapshot():
    data = {"type": "snapshot", "timestamp": 1554373962454, "instrument_name": "BTC-PERPETUAL",
            "change_id": 297217, "bids": [["new", 5042.34, 30], ["new", 5041.94, 20]],
            "asks": [["new", 5042.64, 40]]}
    (ev,) = parse(_note(data), 0.0).events
    assert (ev.kind, ev.seq, ev.prev_seq) == (SNAPSHOT, 297217, None)
    assert ev.bids == [(5042.34, 30.0), (5041.94, 20.0)]


def test_grouped_channel_is_a_depth_limited_refresh_every_time():
    data = {"timestamp": 1554375447971, "instrument_name": "ETH-PERPETUAL", "change_id": 109615,
            "bids": [[160, 40], [159.5, 0]], "asks": [[161, 20]]}
    p = parse(_note(data, channel="book.ETH-PERPETUAL.none.10.100ms"), 1.0)
    assert p.kind == BOOK
    (ev,) = p.events
    assert (ev.kind, ev.product, ev.seq, ev.prev_seq) == (REFRESH, "ETH-PERPETUAL", 109615, None)
    assert ev.depth_limit == 10
    assert ev.bids == [(160.0, 40.0), (159.5, 0.0)]
    assert ev.asks == [(161.0, 20.0)]


@pytest.mark.parametrize("bids,asks", [
    ([("remove", 100.0, 1.0)], []),
    ([], [("new", 101.0, -2.0)]),
    ([("new", 100.0, "x")], []),
    ([("new", 100.0, float("inf"))], []),
    ([("new",)], []),
], ids=["bad_action", "negative_amount", "non_numeric", "infinite", "short_entry"])
def test_bad_level_names_the_instrument(bids, asks):
    with pytest.raises(FrameError) as ei:
        parse(_change(bids=bids, asks=asks, inst="ETH-PERPETUAL"), 0.0)
    assert ei.value.kind == "bad_level"
    assert ei.value.products == ["ETH-PERPETUAL"]
    assert ei.value.seq is None


def test_book_data_missing_change_id_is_bad_level():
    msg = _change()
    del msg["params"]["data"]["change_id"]
    with pytest.raises(FrameError) as ei:
        parse(msg, 0.0)
    assert (ei.value.kind, ei.value.products) == ("bad_level", ["BTC-PERPETUAL"])


def test_other_subscriptions_are_ignored():
    msg = _note({"instrument_name": "BTC-PERPETUAL"}, channel="markprice.options.btc_usd")
    assert parse(msg, 0.0).kind == IGNORED


def test_trades_are_taker_side_and_inverse_sizes_are_converted():
    data = [{"trade_seq": 30289442, "trade_id": "48079269", "timestamp": 1590484512188,
             "tick_direction": 2, "price": 8950, "mark_price": 8948.9,
             "instrument_name": "BTC-PERPETUAL", "index_price": 8955.88, "direction": "sell",
             "amount": 10}]
    p = parse(_note(data, channel="trades.BTC-PERPETUAL.100ms"), 1.0)
    (t,) = p.events
    assert (p.kind, t.side, t.seq, t.trade_id, t.size) == (TRADES, "sell", 30289442, "48079269", 10.0)
    assert t.notional == 10.0 and t.base_size == pytest.approx(10 / 8950)  # 10 USD of BTC
    option = dict(data[0], instrument_name="BTC-25MAR22-400000-C", price=0.027, amount=2)
    (t,) = parse(_note([option], channel="trades.BTC-25MAR22-400000-C.100ms"), 1.0).events
    assert (t.base_size, t.notional) == (2.0, pytest.approx(0.054))  # 2 BTC options, premium in BTC
    with pytest.raises(FrameError) as ei:
        parse(_note([dict(data[0], direction="up")], channel="trades.BTC-PERPETUAL.100ms"), 1.0)
    assert (ei.value.kind, ei.value.products) == ("bad_trade", ["BTC-PERPETUAL"])


# ------------------------------------------------------------------ control messages


def test_heartbeat_and_test_request():
    hb = parse({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}}, 0.0)
    tr = parse({"jsonrpc": "2.0", "method": "heartbeat",
                        "params": {"type": "test_request"}}, 0.0)
    assert (hb.kind, hb.events) == (HEARTBEAT, [])
    assert (tr.kind, tr.events) == (TEST_REQUEST, [])


def test_raw_refusal_error_reply():
    p = parse({"jsonrpc": "2.0", "id": 17,
                       "error": {"code": 13778,
                                 "message": "raw_subscriptions_not_available_for_unauthorized"},
                       "testnet": False}, 0.0)
    assert p.kind == ERROR
    assert p.ref == 17
    assert p.detail == "13778 raw_subscriptions_not_available_for_unauthorized"


def test_invalid_params_error_reply_includes_data():
    p = parse({"jsonrpc": "2.0", "id": 8,
                       "error": {"code": -32602, "message": "Invalid params",
                                 "data": {"reason": "wrong format", "param": "channels"}}}, 0.0)
    assert (p.kind, p.ref) == (ERROR, 8)
    assert p.detail.startswith("-32602 Invalid params ")
    assert "wrong format" in p.detail


def test_rpc_result_is_reply():
    p = parse({"jsonrpc": "2.0", "id": 4235, "result": ["book.BTC-PERPETUAL.100ms"]}, 0.0)
    assert (p.kind, p.ref, p.events) == (REPLY, 4235, [])


@pytest.mark.parametrize("msg,kind", [
    ({"jsonrpc": "2.0", "method": "mystery"}, "unknown_type"),
    ("just a string", "unknown_type"),
    ({"jsonrpc": "2.0", "method": "subscription", "params": [1, 2]}, "bad_frame"),
    ({"jsonrpc": "2.0", "method": "heartbeat", "params": "test_request"}, "bad_frame"),
    ({"jsonrpc": "2.0", "id": [1], "result": 1}, "bad_reply"),
    ({"jsonrpc": "2.0", "id": "7", "result": 1}, "bad_reply"),
], ids=["unknown_method", "not_object", "params_list", "params_string", "id_list", "id_string"])
def test_unusable_messages_are_classified(msg, kind):
    with pytest.raises(FrameError) as ei:
        parse(msg, 0.0)
    assert ei.value.kind == kind


# ------------------------------------------------------------------ outbound messages


BOOKS_ONLY = {"trades": False, "tickers": False}


def test_open_sets_heartbeat_and_book_channels_with_unique_ids():
    proto = deribit.DeribitProtocol(BOOKS_ONLY)
    msgs = proto.open(["BTC-PERPETUAL", "ETH-PERPETUAL"])
    assert [m["method"] for m in msgs] == ["public/set_heartbeat", "public/subscribe"]
    assert msgs[0]["params"] == {"interval": 10}
    assert msgs[1]["params"] == {"channels": ["book.BTC-PERPETUAL.100ms",
                                              "book.ETH-PERPETUAL.100ms"]}
    assert all(m["jsonrpc"] == "2.0" for m in msgs)
    more = proto.subscribe(["BTC-PERPETUAL"]) + proto.resubscribe("BTC-PERPETUAL")
    ids = [m["id"] for m in msgs + more + proto.answer_test_request()]
    assert len(set(ids)) == len(ids) == 6
    agg2 = deribit.DeribitProtocol({"interval": "agg2", "depth": 10, **BOOKS_ONLY}).subscribe(
        ["ETH-PERPETUAL"])
    assert agg2[0]["params"] == {"channels": ["book.ETH-PERPETUAL.none.10.agg2"]}


def test_trades_and_ticker_ride_the_same_subscribe_but_a_resync_is_the_book_alone():
    proto = deribit.DeribitProtocol({})
    (sub,) = proto.subscribe(["BTC-PERPETUAL"])
    assert sub["params"]["channels"] == ["book.BTC-PERPETUAL.100ms", "trades.BTC-PERPETUAL.100ms",
                                         "ticker.BTC-PERPETUAL.100ms"]
    assert [m["params"]["channels"] for m in proto.resubscribe("BTC-PERPETUAL")] == [
        ["book.BTC-PERPETUAL.100ms"]] * 2


def test_subscribe_splits_at_500_channels_per_request():
    names = [f"BTC-{i}" for i in range(1201)]
    msgs = deribit.DeribitProtocol(BOOKS_ONLY).subscribe(names)
    assert [len(m["params"]["channels"]) for m in msgs] == [500, 500, 201]
    msgs = deribit.DeribitProtocol({}).subscribe(names)  # three channels per instrument
    assert max(len(m["params"]["channels"]) for m in msgs) <= 500
    assert sum(len(m["params"]["channels"]) for m in msgs) == 3 * 1201


def test_replies_and_errors_are_pinned_on_their_request():
    proto = deribit.DeribitProtocol({})
    heartbeat, sub = proto.open(["BTC-PERPETUAL", "ETH-PERPETUAL"])
    assert proto.reply(sub["id"]) == Reply(["BTC-PERPETUAL", "ETH-PERPETUAL"], True)
    assert proto.refused(heartbeat["id"], "-32602 Invalid params") is None  # names no product
    assert proto.refused(None, "unattributed") is None
    assert proto.refused(999, "never sent") is None
    (again,) = proto.subscribe(["SOL-PERPETUAL"])
    assert proto.refused(again["id"], "11050 bad_request") == ["SOL-PERPETUAL"]


def test_test_answers_are_not_tracked():
    proto = deribit.DeribitProtocol({})
    for _ in range(10_000):
        proto.answer_test_request()
    assert len(proto._pending) == 0


def test_resubscribe_unsubscribes_then_subscribes():
    msgs = deribit.DeribitProtocol({}).resubscribe("ETH-PERPETUAL")
    assert [(m["method"], m["params"]) for m in msgs] == [
        ("public/unsubscribe", {"channels": ["book.ETH-PERPETUAL.100ms"]}),
        ("public/subscribe", {"channels": ["book.ETH-PERPETUAL.100ms"]}),
    ]
    assert msgs[0]["id"] != msgs[1]["id"]


def test_answer_test_request_is_public_test():
    (m,) = deribit.DeribitProtocol({}).answer_test_request()
    assert (m["method"], m["params"], m["jsonrpc"]) == ("public/test", {}, "2.0")
    assert isinstance(m["id"], int)

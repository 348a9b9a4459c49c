"""Coinbase Advanced Trade parser (sources.venues.coinbase) on the bundled real recording."""

import copy
from collections import Counter
from pathlib import Path

import orjson
import pytest

from sources.venues import coinbase
from sources.capture.format import read_capture
from sources.venues.base import (iso_ms, ANY_PRODUCT, BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, TICKER,
                                 TRADES, FrameError)
from state.events import SNAPSHOT, UPDATE


def parse(msg, ts):
    """The venue parser on the frame's bytes, as the feed calls it."""
    return coinbase.parse(orjson.dumps(msg), ts)

REC = Path(__file__).resolve().parent.parent / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"


@pytest.fixture(scope="module")
def frames():
    return [f for f in read_capture(REC) if f.dir == "recv"]


@pytest.fixture(scope="module")
def parsed(frames):
    return [parse(f.msg, f.ts) for f in frames]


def _l2(frames, kind, product):
    for f in frames:
        m = f.msg
        if m["channel"] == "l2_data" and m["events"][0]["type"] == kind \
                and m["events"][0]["product_id"] == product:
            return f
    raise AssertionError(f"no {kind} for {product}")


def _update_msg(seq=7, updates=None, product="BTC-USD"):
    if updates is None:
        updates = [{"side": "bid", "event_time": "2026-08-09T21:05:48.210883Z",
                    "price_level": "65062.5", "new_quantity": "0.5"}]
    return {"channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.505350477Z",
            "sequence_num": seq,
            "events": [{"type": "update", "product_id": product, "updates": updates}]}


# ------------------------------------------------------------------ the real recording


def test_every_frame_parses_and_kinds_are_counted(frames, parsed):
    assert len(frames) == 1030
    assert Counter(p.kind for p in parsed) == {BOOK: 775, TRADES: 59, TICKER: 160, IGNORED: 6,
                                               HEARTBEAT: 25, REPLY: 5}
    # every frame carries its connection counter, whatever the channel
    assert [p.seq for p in parsed] == list(range(1030))
    by_channel = Counter((f.msg["channel"], p.kind) for f, p in zip(frames, parsed))
    assert by_channel == {("l2_data", BOOK): 775, ("ticker", TICKER): 160,
                          ("market_trades", TRADES): 59, ("candles", IGNORED): 6,
                          ("heartbeats", HEARTBEAT): 25, ("subscriptions", REPLY): 5}
    trades = [t for p in parsed if p.kind == TRADES for t in p.events]
    assert len(trades) == 279 and len({t.trade_id for t in trades}) == 279
    assert {t.side for t in trades} == {"buy", "sell"}
    events = [e for p in parsed if p.kind == BOOK for e in p.events]
    assert Counter((e.kind, e.product) for e in events) == {
        (SNAPSHOT, "BTC-USD"): 1, (SNAPSHOT, "ETH-USD"): 1,
        (UPDATE, "BTC-USD"): 399, (UPDATE, "ETH-USD"): 374}
    assert all(e.venue == "coinbase" and e.prev_seq is None for e in events)


def test_snapshot_level_counts_and_offer_side(frames, parsed):
    snaps = {e.product: e for p in parsed if p.kind == BOOK for e in p.events
             if e.kind == SNAPSHOT}
    btc, eth = snaps["BTC-USD"], snaps["ETH-USD"]
    assert (len(btc.bids), len(btc.asks)) == (18764, 27236)
    assert (len(eth.bids), len(eth.asks)) == (6935, 16399)
    assert len(btc.bids) + len(btc.asks) == 46000
    assert len(eth.bids) + len(eth.asks) == 23334
    # the recording spells the ask side "offer" only
    raw = _l2(frames, "snapshot", "BTC-USD").msg["events"][0]["updates"]
    assert {u["side"] for u in raw} == {"bid", "offer"}
    # a snapshot's sides are price -> size dicts, in wire order
    assert max(btc.bids) == 65083.66
    assert next(iter(btc.bids.items())) == (65083.66, 0.20371215)
    assert min(btc.asks) > 65083.66
    assert btc.seq == 13
    assert btc.ts_exchange == iso_ms("2026-08-09T21:05:48.483587501Z")


def test_offer_and_ask_spellings_parse_identically(frames):
    f = _l2(frames, "snapshot", "ETH-USD")
    as_ask = copy.deepcopy(f.msg)
    n = 0
    for u in as_ask["events"][0]["updates"]:
        if u["side"] == "offer":
            u["side"] = "ask"
            n += 1
    assert n == 16399
    a = parse(f.msg, f.ts)
    b = parse(as_ask, f.ts)
    assert a == b
    assert len(b.events[0].asks) == 16399


def test_update_carries_sequence_num_and_first_event_time(frames):
    f = next(f for f in frames if f.msg["sequence_num"] == 14)
    p = parse(f.msg, 1786309548883.96)
    assert p.kind == BOOK and p.seq == 14
    (ev,) = p.events
    assert ev.kind == UPDATE and ev.product == "BTC-USD"
    assert ev.seq == 14 and ev.prev_seq is None
    assert ev.ts_recv == 1786309548883.96
    # first update's event_time 2026-08-09T21:05:48.210883Z, by hand:
    # days 1970-01-01..2026-01-01 = 56*365 + 14 leap days = 20454, + 220 to Aug 9
    # -> 20674 * 86400 = 1786233600, + 21:05:48 (75948 s) = 1786309548 s
    assert ev.ts_exchange == pytest.approx(1786309548210.883, abs=1e-3)
    assert (len(ev.bids), len(ev.asks)) == (17, 1)
    assert ev.asks == [(65083.67, 0.15556334)]  # an "offer" level
    assert ev.bids[0] == (65062.5, 0.00583)
    assert ev.bids[1] == (65061.91, 0.0)  # "0" removes a level


def test_iso_ms_nanoseconds_and_implausible_times():
    assert iso_ms("2026-08-09T21:05:48.505350477Z") == pytest.approx(
        1786309548505.350, abs=1e-3)
    for text in ("1970-01-01T00:00:00Z", "2150-01-01T00:00:00Z", "2026-08-09T21:05:48"):
        with pytest.raises(ValueError):
            iso_ms(text)


def test_update_without_levels_uses_message_timestamp():
    ev = parse(_update_msg(updates=[]), 1.0).events[0]
    assert ev.ts_exchange == pytest.approx(1786309548505.350, abs=1e-3)
    assert ev.bids == [] and ev.asks == []


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize("bad", [
    {"side": "bid", "event_time": "2026-08-09T21:05:48Z", "price_level": "100", "new_quantity": "-1"},
    {"side": "bid", "event_time": "2026-08-09T21:05:48Z", "price_level": "100", "new_quantity": "abc"},
    {"side": "offer", "event_time": "2026-08-09T21:05:48Z", "price_level": "100", "new_quantity": "nan"},
    {"side": "sell", "event_time": "2026-08-09T21:05:48Z", "price_level": "100", "new_quantity": "1"},
    {"side": "bid", "event_time": "2026-08-09T21:05:48Z", "price_level": "100"},
], ids=["negative", "non_numeric", "nan", "unknown_side", "missing_size"])
def test_bad_level_rejects_frame_with_seq_and_product(bad):
    good = {"side": "bid", "event_time": "2026-08-09T21:05:48Z", "price_level": "99",
            "new_quantity": "1"}
    with pytest.raises(FrameError) as ei:
        parse(_update_msg(seq=42, updates=[good, bad], product="ETH-USD"), 0.0)
    assert ei.value.kind == "bad_level"
    assert ei.value.seq == 42
    assert ei.value.products == ["ETH-USD"]


def test_missing_product_id_is_bad_level_that_may_concern_any_product():
    # The event without a product was some product's update: the counter moved on
    # past it, so only resyncing every book on the connection keeps them right.
    msg = _update_msg(seq=9)
    msg["events"].append({"type": "update", "updates": []})
    with pytest.raises(FrameError) as ei:
        parse(msg, 0.0)
    assert ei.value.kind == "bad_level"
    assert ei.value.seq == 9
    assert ei.value.products is ANY_PRODUCT


def test_non_object_event_is_bad_level_not_a_crash():
    msg = _update_msg(seq=11)
    msg["events"].append(None)
    with pytest.raises(FrameError) as ei:
        parse(msg, 0.0)
    assert ei.value.kind == "bad_level"
    assert ei.value.seq == 11
    assert ei.value.products is ANY_PRODUCT


def test_unknown_l2_event_type():
    msg = _update_msg(seq=3)
    msg["events"][0]["type"] = "delta"
    with pytest.raises(FrameError) as ei:
        parse(msg, 0.0)
    assert ei.value.kind == "unknown_type"
    assert (ei.value.seq, ei.value.products) == (3, ["BTC-USD"])


def test_unknown_channel_keeps_its_sequence_num():
    with pytest.raises(FrameError) as ei:
        parse({"channel": "futures_balance_summary", "sequence_num": 77, "events": []}, 0.0)
    assert ei.value.kind == "unknown_type"
    assert "futures_balance_summary" in str(ei.value)
    # the frame used up a connection counter value; without it the next frame looks like a gap
    assert ei.value.seq == 77
    assert ei.value.products == []


def test_non_object_frame_is_unknown_type():
    with pytest.raises(FrameError) as ei:
        parse([1, 2], 0.0)
    assert ei.value.kind == "unknown_type" and ei.value.seq is None


def test_error_message():
    p = parse({"type": "error", "message": "authentication failure"}, 0.0)
    assert p.kind == ERROR
    assert p.detail == "authentication failure"
    assert p.events == [] and p.seq is None
    p = parse({"type": "error", "message": "failure", "reason": "too many"}, 0.0)
    assert p.detail == "failure: too many"


def test_subscriptions_reply_and_heartbeat():
    p = parse({"channel": "subscriptions", "sequence_num": 1,
                        "events": [{"subscriptions": {"level2": ["BTC-USD"]}}]}, 0.0)
    assert (p.kind, p.seq) == (REPLY, 1)
    p = parse({"channel": "heartbeats", "sequence_num": 2,
                        "events": [{"heartbeat_counter": "3049"}]}, 0.0)
    assert (p.kind, p.seq, p.events) == (HEARTBEAT, 2, [])


# ------------------------------------------------------------------ outbound messages


def test_open_subscribes_one_channel_per_message_plus_heartbeats():
    msgs = coinbase.CoinbaseProtocol({"tickers": True}).open(["BTC-USD", "ETH-USD"])
    assert msgs == [
        {"type": "subscribe", "channel": "heartbeats"},
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "market_trades"},
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "ticker"},
    ]
    books_only = coinbase.CoinbaseProtocol({"trades": False}).open(["BTC-USD"])
    assert [m["channel"] for m in books_only] == ["heartbeats", "level2"]
    assert all("channels" not in m for m in msgs)


def test_errors_are_pinned_on_the_oldest_waiting_subscribe():
    proto = coinbase.CoinbaseProtocol({"trades": False})
    proto.open(["BTC-USD", "ETH-USD"])
    assert proto.reply(None).products == []  # the heartbeats subscription
    assert proto.refused(None, "Failed to subscribe: unknown product_ids ['ETH-USD']") == [
        "ETH-USD"]
    assert proto.refused(None, "authentication failure") is None  # nothing waits any more
    proto.subscribe(["SOL-USD"])
    assert proto.refused(None, "too many") == ["SOL-USD"]


def test_pending_requests_are_bounded():
    proto = coinbase.CoinbaseProtocol({"trades": False})
    for _ in range(proto.MAX_PENDING + 10):
        proto.subscribe(["BTC-USD"])
    assert len(proto._pending) == proto.MAX_PENDING and proto.forgotten == 10


def test_resubscribe_unsubscribes_first():
    assert coinbase.CoinbaseProtocol({}).resubscribe("ETH-USD") == [
        {"type": "unsubscribe", "product_ids": ["ETH-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "level2"},
    ]

"""Trades and time bars on the real recordings: aggressor sides, dedupe, gaps, bars.

The venues' docs are ambiguous about what their ``side`` fields mean (the maker's
or the taker's), so the mapping is decided here against the book: a trade whose
aggressor bought prints at or above the best ask known just before it, a sell at
or below the best bid. A correct mapping scores well above 85 % on every
recording; a wrong one scores near the complement.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import orjson
import pytest
from bytewax.testing import run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow
from sources.capture.format import read_capture
from sources.feed.feed import Feed
from sources.feed.reporting import BadInput
from sources.venues import get_venue
from state.events import BookEvent, Trade
from state.product import BarSpec, ProductState
from tests.helpers import read_dir

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
WITH_TRADES = {
    "coinbase": RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz",
    "coinbase_exchange": RECORDINGS / "coinbase_exchange_level2.jsonl.gz",
    "binance_spot": RECORDINGS / "binance_spot_btcusdt.jsonl.gz",
    "binance_usdm": RECORDINGS / "binance_usdm_ethusdt.jsonl.gz",
    "binance_coinm": RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz",
    "binance_10pairs": RECORDINGS / "binance_spot_10pairs.jsonl.gz",
}


def run_feed(path: Path, spec: BarSpec = None):
    """Every frame of a capture through a Feed and one ProductState per product;
    for each trade, the book's best bid and ask just before it."""
    frames = list(read_capture(path))
    feed = Feed(get_venue(frames[0].venue), None, BadInput(), frames[0].stream, clock_ms=1000.0)
    states: Dict[str, ProductState] = {}
    checks: List[Tuple[Trade, float, float]] = []
    records: List[dict] = []
    for f in frames:
        out: list = []
        if f.dir == "rest":
            feed.on_rest(f.url, f.raw, f.ts, out)
        elif f.dir == "recv":
            feed.on_frame(f.raw, f.ts, out)
        for _, item in out:
            state = states.setdefault(item.product, ProductState(spec))
            if isinstance(item, Trade) and state.valid and item.ts_exchange is not None:
                checks.append((item, state.top[0], state.top[2]))
            records.extend(state.on_item(item, 10, 1e9))
    for product, state in states.items():
        records.extend(state.finish(feed.venue.name, product))
    return feed, states, checks, records


#: Share of trades at or through the touch on their aggressor's side, measured here:
#: Coinbase AT 0.910, Binance spot 0.977, USD-M 0.955, COIN-M 1.000, 10 pairs 0.908.
#: Coinbase Exchange's public book (level2_batch) comes in 50 ms batches that lag its
#: matches, so 41 % of its prints fall inside the last spread seen (0.589 at the
#: touch, none on the wrong side); there the quote rule (buys above the mid) is the
#: test, at 0.916.
QUOTE_RULE = {"coinbase_exchange"}


@pytest.mark.parametrize("name", list(WITH_TRADES))
def test_the_aggressor_side_agrees_with_the_book(name):
    _, _, checks, _ = run_feed(WITH_TRADES[name])
    assert len(checks) >= 20, "the recording has trades over a synced book"
    if name in QUOTE_RULE:
        right = sum(1 for t, bid, ask in checks
                    if (t.price >= (bid + ask) / 2) == (t.side == "buy"))
    else:
        right = sum(1 for t, bid, ask in checks
                    if (t.side == "buy" and t.price >= ask) or (t.side == "sell" and t.price <= bid))
    wrong = sum(1 for t, bid, ask in checks
                if (t.side == "buy" and t.price <= bid) or (t.side == "sell" and t.price >= ask))
    assert right / len(checks) >= 0.85, (right, wrong, len(checks))
    assert wrong / len(checks) < 0.05


def test_coinbase_snapshot_trades_are_not_counted_twice():
    """Advanced Trade resends its recent trades in a snapshot on every (re)subscribe:
    feeding the recording's market_trades snapshot frames again counts nothing new."""
    path = WITH_TRADES["coinbase"]
    frames = [f for f in read_capture(path) if f.dir == "recv"]
    snaps = [f for f in frames if b'"market_trades"' in f.raw[:40] and b'"snapshot"' in f.raw]
    assert len(snaps) == 2
    feed = Feed(get_venue("coinbase"), None, BadInput())
    states: Dict[str, ProductState] = {}
    seq = 0
    for f in frames + snaps:  # the snapshots again, renumbered as a resubscribe would
        msg = orjson.loads(f.raw)
        msg["sequence_num"] = seq
        seq += 1
        out: list = []
        feed.on_frame(orjson.dumps(msg), f.ts, out)
        for _, item in out:
            states.setdefault(item.product, ProductState()).on_item(item, 10, 1e9)
    counts = Counter()
    for s in states.values():
        counts.update(s.counts)
    assert counts["trades"] == 279  # 200 in the snapshots + 79 in updates, each once
    assert counts["trade_duplicates"] == 200


def test_a_trade_id_gap_is_a_warning_status_and_the_bar_says_how_many_are_missing():
    path = WITH_TRADES["binance_spot"]
    frames = [f for f in read_capture(path) if f.dir == "recv" and b"@trade" in f.raw[:40]]
    feed = Feed(get_venue("binance"), None, BadInput())
    state = ProductState(BarSpec((60_000,), 0.0, 0.0))
    records: list = []
    for i, f in enumerate(frames[:200]):
        if i == 100:
            continue  # one print lost
        out: list = []
        feed.on_frame(f.raw, f.ts, out)
        for _, item in out:
            records.extend(state.on_item(item, 10, 1e9))
    records.extend(state.finish("binance", "BTCUSDT"))
    warnings = [r for r in records if r["type"] == "status"]
    assert [(w["state"], w["reason"]) for w in warnings] == [("warning", "trade_gap")]
    assert "1 trade ids missing" in warnings[0]["detail"]
    assert sum(b["missing_trades"] for b in records if b["type"] == "bar") == 1
    assert state.counts["trades"] == 199


def _final_bars(records: List[dict]) -> Dict[Tuple[str, float, int], dict]:
    """The last revision of every bar, as a downstream upsert keeps it."""
    final: Dict[Tuple[str, float, int], dict] = {}
    for r in records:
        if r["type"] == "bar":
            key = (r["product"], r["interval_s"], r["start"])
            if key not in final or r["revision"] >= final[key]["revision"]:
                final[key] = r
    return final


@pytest.mark.parametrize("name", ["binance_spot", "binance_10pairs", "coinbase_exchange"])
def test_bars_match_hand_computed_per_minute_aggregates(name):
    """Bars against an independent computation straight from the recorded frames:
    per product and minute of trade time, counts and volumes by aggressor side."""
    spec = BarSpec((60_000,), 2000.0, 60_000.0)
    _, _, _, records = run_feed(WITH_TRADES[name], spec)
    bars = _final_bars(records)
    expected: Dict[Tuple[str, int], Counter] = defaultdict(Counter)
    seen = set()
    for f in read_capture(WITH_TRADES[name]):
        if f.dir != "recv":
            continue
        msg = orjson.loads(f.raw)
        data = msg.get("data", msg)
        if data.get("e") in ("trade", "aggTrade"):  # Binance: m = buyer is maker
            ident, ts, px, qty = data.get("a", data.get("t")), data["T"], data["p"], data["q"]
            buy = not data["m"]
            product = data["s"]
        elif data.get("type") == "match":  # Coinbase Exchange: side is the maker's
            # (not last_match: the trade before the subscription, not counted)
            ident, px, qty = data["trade_id"], data["price"], data["size"]
            from datetime import datetime
            ts = datetime.fromisoformat(data["time"]).timestamp() * 1000.0
            buy = data["side"] == "sell"
            product = data["product_id"]
        else:
            continue
        if (product, ident) in seen:
            continue
        seen.add((product, ident))
        c = expected[(product, int(ts // 60_000) * 60_000)]
        c["trades"] += 1
        c["buy_trades"] += buy
        c["volume"] += float(qty)
        c["buy_volume"] += float(qty) * buy
        c["quote"] += float(qty) * float(px)
    assert expected
    for (product, start), c in expected.items():
        bar = bars[(product, 60.0, start)]
        assert (bar["trades"], bar["buy_trades"], bar["sell_trades"]) == (
            c["trades"], c["buy_trades"], c["trades"] - c["buy_trades"])
        assert bar["volume"] == pytest.approx(c["volume"], rel=1e-9)
        assert bar["buy_volume"] == pytest.approx(c["buy_volume"], rel=1e-9, abs=1e-12)
        assert bar["quote_volume"] == pytest.approx(c["quote"], rel=1e-9)
        assert bar["low"] * (1 - 1e-12) <= bar["vwap"] <= bar["high"] * (1 + 1e-12)
    assert len([b for b in bars.values() if b["trades"]]) == len(expected)


def test_inverse_contract_volumes_are_in_base_and_quote_units():
    """COIN-M ETHUSD_PERP sizes are contracts of 10 USD: quote volume is 10 USD per
    contract, base volume that divided by the price."""
    spec = BarSpec((60_000,), 2000.0, 60_000.0)
    _, _, _, records = run_feed(WITH_TRADES["binance_coinm"], spec)
    trades = [r for r in records if r["type"] == "trade"]
    assert trades
    for t in trades:
        assert t["notional"] == pytest.approx(10.0 * t["size"])
        assert t["base_size"] == pytest.approx(10.0 * t["size"] / t["price"])
    bars = list(_final_bars(records).values())
    assert sum(b["quote_volume"] for b in bars) == pytest.approx(sum(t["notional"] for t in trades))


def _trade(ts: float, tid: int, px: float = 100.0, side: str = "buy") -> Trade:
    return Trade("binance", "BTCUSDT", ts, ts, str(tid), px, 1.0, side, 1.0, px, tid)


def test_a_late_trade_revises_its_emitted_bar():
    state = ProductState(BarSpec((60_000,), 2000.0, 60_000.0))
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    out = state.on_item(_trade(t0 + 1000, 1), 10, 1e9)
    out += state.on_item(_trade(t0 + 65_000, 2, 101.0), 10, 1e9)  # watermark 63 s: bar 0 closes
    first = [r for r in out if r["type"] == "bar"]
    assert [(b["start"], b["revision"], b["trades"], b["complete"]) for b in first] == [
        (t0, 0, 1, True)]
    late = state.on_item(_trade(t0 + 30_000, 3, 99.0, "sell"), 10, 1e9)
    (revised,) = [r for r in late if r["type"] == "bar"]
    assert (revised["revision"], revised["trades"], revised["sell_trades"]) == (1, 2, 1)
    assert (revised["open"], revised["close"], revised["low"]) == (100.0, 99.0, 99.0)
    # too late: beyond the revision window, counted and dropped
    state.on_item(_trade(t0 + 200_000, 4), 10, 1e9)
    assert [r for r in state.on_item(_trade(t0 + 1500, 5), 10, 1e9) if r["type"] == "bar"] == []
    assert state.bars.too_late == 1
    partial = state.finish("binance", "BTCUSDT")
    assert partial and all(not b["complete"] for b in partial)


def test_returns_and_realized_volatility():
    state = ProductState(BarSpec((60_000,), 0.0, 60_000.0))
    t0 = 1_700_000_040_000
    prices = [100.0, 101.0, 99.0, 100.0]
    out: list = []
    for i, px in enumerate(prices):
        out += state.on_item(_trade(t0 + i, i, px), 10, 1e9)
    out += state.on_item(_trade(t0 + 60_000, 10, 102.0), 10, 1e9)
    out += state.on_item(_trade(t0 + 120_000, 11, 103.0), 10, 1e9)
    bars = [r for r in out if r["type"] == "bar"]
    r = [math.log(b / a) for a, b in zip(prices, prices[1:])]
    assert bars[0]["realized_vol"] == pytest.approx(math.sqrt(sum(x * x for x in r)))
    assert bars[0]["log_return"] is None
    assert bars[1]["log_return"] == pytest.approx(math.log(102.0 / 100.0))


def test_a_quiet_products_bar_closes_on_its_connections_clock():
    """The Coinbase recording: heartbeats and the other product's traffic move the
    clock, so bars close without waiting for the product's own next trade."""
    spec = BarSpec((10_000,), 1000.0, 60_000.0)
    _, _, _, records = run_feed(WITH_TRADES["coinbase"], spec)
    complete = [r for r in records if r["type"] == "bar" and r["complete"]]
    assert {r["product"] for r in complete} == {"BTC-USD", "ETH-USD"}


def test_bars_are_the_same_at_full_speed_and_at_recorded_pace(tmp_path):
    paths = [str(WITH_TRADES["binance_10pairs"])]
    fast = Config(replay=paths, jsonl_dir=str(tmp_path / "fast"), bar_intervals=(10_000,))
    paced = Config(replay=paths, jsonl_dir=str(tmp_path / "paced"), bar_intervals=(10_000,),
                   replay_speed=20.0)
    run_main(build_flow(fast))
    run_main(build_flow(paced))
    bars = lambda d: {k: [r for r in v if r["type"] == "bar"] for k, v in read_dir(d).items()}  # noqa: E731
    a, b = bars(tmp_path / "fast"), bars(tmp_path / "paced")
    assert a == b and sum(map(len, a.values())) > 20


def test_trades_bars_and_tickers_reach_the_data_sinks(tmp_path):
    run_main(build_flow(Config(replay=[str(WITH_TRADES["coinbase"])],
                               jsonl_dir=str(tmp_path), bar_intervals=(1000, 10_000))))
    recs = [r for v in read_dir(tmp_path).values() for r in v]
    kinds = Counter(r["type"] for r in recs)
    assert kinds["trade"] == 279 and kinds["ticker"] == 160
    assert {r["interval_s"] for r in recs if r["type"] == "bar"} == {1.0, 10.0}
    bar = next(r for r in recs if r["type"] == "bar" and r["book_updates"] > 0 and r["trades"])
    assert bar["mid"] is not None and bar["spread_bps_mean"] is not None
    assert bar["spread_bps_min"] <= bar["spread_bps_mean"] <= bar["spread_bps_max"]
    assert bar["source"] == "trades"

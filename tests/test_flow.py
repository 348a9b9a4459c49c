"""The whole dataflow, run by Bytewax (``run_main``) over the bundled real recordings."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import orjson
import pytest
from bytewax.testing import run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
COINBASE = RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT = RECORDINGS / "deribit_options.jsonl.gz"
DERIBIT_GAP = RECORDINGS / "deribit_gap.jsonl"


def run_replay(paths: List[Path], out: Path, **kwargs) -> Dict[str, List[dict]]:
    """Run the real flow over captures; return the records of each output file."""
    cfg = Config(replay=[str(p) for p in paths], sinks=["jsonl"], jsonl_dir=str(out), **kwargs)
    run_main(build_flow(cfg))
    return {f.name: [orjson.loads(line) for line in f.read_bytes().splitlines()]
            for f in sorted(out.glob("*.jsonl"))}


def summaries(records: List[dict]) -> List[dict]:
    return [r for r in records if r["type"] == "summary"]


def book_records(records: List[dict]) -> List[dict]:
    """Summaries and statuses (trades, tickers and bars are tested in test_trades)."""
    return [r for r in records if r["type"] in ("summary", "status")]


def test_coinbase_recording_full_depth_never_crossed(tmp_path, capsys):
    files = run_replay([COINBASE], tmp_path)
    assert sorted(files) == ["coinbase_BTC-USD.jsonl", "coinbase_ETH-USD.jsonl"]
    btc = book_records(files["coinbase_BTC-USD.jsonl"])
    eth = book_records(files["coinbase_ETH-USD.jsonl"])
    # One "synced" status, then one summary per applied event (snapshot + updates).
    assert [r["type"] for r in btc[:2]] == ["status", "summary"]
    assert btc[0]["state"] == "synced"
    assert len(summaries(btc)) == 1 + 399
    assert len(summaries(eth)) == 1 + 374
    # The snapshot summaries carry the whole book: 46,000 and 23,334 levels.
    first_btc, first_eth = summaries(btc)[0], summaries(eth)[0]
    assert first_btc["bid_levels"] + first_btc["ask_levels"] == 46_000
    assert first_eth["bid_levels"] + first_eth["ask_levels"] == 23_334
    assert first_btc["ask_levels"] > 20_000  # the asks arrive spelled "offer"
    for rec in summaries(btc) + summaries(eth):
        assert rec["bid_px"] < rec["ask_px"]
        assert rec["bid_levels"] > 5_000 and rec["ask_levels"] > 10_000
    assert all(r["type"] != "status" or r["state"] == "synced" for r in btc + eth)
    last = summaries(btc)[-1]
    assert (last["bid_px"], last["ask_px"]) == (65083.66, 65083.67)
    assert last["seq"] == 1027
    # The console shows the two books coming up, and no alert: spreads stay ~0.002 bps.
    console = capsys.readouterr().out.splitlines()
    assert len(console) == 2 and all("SYNCED" in line for line in console)


def test_replay_is_deterministic(tmp_path):
    a = run_replay([COINBASE, DERIBIT], tmp_path / "a")
    b = run_replay([COINBASE, DERIBIT], tmp_path / "b")
    assert a == b
    assert len(a) == 12  # 2 Coinbase products + 10 Deribit options


def test_deribit_options_recording(tmp_path, capsys):
    files = run_replay([DERIBIT], tmp_path, alert_bps=500.0)
    assert len(files) == 10
    total = sum(len(summaries(recs)) for recs in files.values())
    assert total == 10 + 177  # one per snapshot and per change
    for recs in files.values():
        assert not any(r["type"] == "status" and r["state"] == "invalid" for r in recs)
    # Option books are wide: some cross the 500 bps threshold, each announced once
    # per excursion on the console (and never written to the data sinks).
    console = capsys.readouterr().out
    assert "SPREAD" in console
    assert all(r["type"] != "alert" for recs in files.values() for r in recs)


def test_deribit_gap_invalidates_book_and_stops_summaries(tmp_path):
    files = run_replay([DERIBIT_GAP], tmp_path)
    recs = book_records(files["deribit_BTC-PERPETUAL.jsonl"])
    kinds = [(r["type"], r.get("state"), r.get("reason")) for r in recs]
    # snapshot, three chained changes, then the gap: no summary from the stale book.
    assert kinds == [("status", "synced", "snapshot")] + [("summary", None, None)] * 4 + [
        ("status", "invalid", "gap"),
    ]
    assert "4095205463" in recs[-1]["detail"]


def test_depth_setting_changes_depth_imbalance_only(tmp_path):
    shallow = run_replay([COINBASE], tmp_path / "d1", depth=1)
    deep = run_replay([COINBASE], tmp_path / "d50", depth=50)
    s1 = summaries(shallow["coinbase_BTC-USD.jsonl"])
    s50 = summaries(deep["coinbase_BTC-USD.jsonl"])
    # depth 1 is the top-of-book imbalance by definition
    assert all(r["depth_imbalance"] == pytest.approx(r["imbalance"]) for r in s1)
    assert any(a["depth_imbalance"] != b["depth_imbalance"] for a, b in zip(s1, s50))
    strip = lambda r: {k: v for k, v in r.items() if k != "depth_imbalance"}  # noqa: E731
    assert [strip(r) for r in s1] == [strip(r) for r in s50]

"""Binance frames through the full flow, per bundled recording.

The Binance recordings are short (4,600 to 7,300 frames), so the cost is taken
as in :mod:`benchmarks.core`, between two runs of the production flow
(:mod:`benchmarks.flowrun`) in alternating order: the recording, and the smallest
bundled capture (one Deribit book), whose CPU time stands for start-up. Frames
are every received frame of the recording (diffs, trades, markPrice), each
through the parser, the feed's REST-snapshot sync and the book step. With so few
frames the figure is rough, a median over rounds.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Dict, List

from benchmarks.common import ROOT, median
from benchmarks.flowrun import run_flow

RECORDINGS = {
    "spot": "binance_spot_btcusdt.jsonl.gz",
    "spot_10pairs": "binance_spot_10pairs.jsonl.gz",
    "usdm": "binance_usdm_ethusdt.jsonl.gz",
    "coinm": "binance_coinm_ethusd_perp.jsonl.gz",
}
BASELINE = ROOT / "recordings" / "deribit_gap.jsonl"


def received_frames(path: Path) -> int:
    """The capture's received frames (``"dir":"recv"`` lines)."""
    with gzip.open(path, "rb") as f:
        return sum(1 for line in f if b'"dir":"recv"' in line)


def measure(work: Path, rounds: int) -> Dict[str, Dict[str, Any]]:
    """Per market: frames, marginal µs per frame (median over ``rounds``), frames/s."""
    out: Dict[str, Dict[str, Any]] = {}
    for market, name in RECORDINGS.items():
        path = ROOT / "recordings" / name
        frames = received_frames(path)
        costs: List[float] = []
        for r in range(rounds):
            base = run_flow(str(BASELINE), work, f"binance_{market}_base_{r}")
            run = run_flow(str(path), work, f"binance_{market}_{r}")
            costs.append((run.cpu - base.cpu) / frames * 1e6)
        us = median(costs)
        out[market] = {"recording": name, "frames": frames, "us_per_frame": us,
                       "us_per_frame_rounds": costs,
                       "frames_per_s": 1e6 / us if us > 0 else None}
    return out

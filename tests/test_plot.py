"""Charts and loaders on the real outputs of real replays of the bundled recordings.

The loaders are checked against the raw lines, the volatility against a
brute-force reference (hypothesis), the depth chart's book against the flow's own
summaries, and the README's two charts are drawn by the script the README names
and looked at (sizes, and the bid/ask colours actually on the canvas).
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.image import imread

from analysis.book_at import book_at
from analysis.load import SCHEMAS, load, parse_time
from analysis.measures import YEAR_S, volatility_by_hour
from tests.runs import BINANCE, COINBASE, ROOT, clean_env, lobstream

TIME = "datetime64[ns, UTC]"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    proc = lobstream("replay", COINBASE, BINANCE, "--out", out, "--status", "0",
                     "--set", "bars.intervals=5s,1m")
    assert proc.returncode == 0, proc.stderr
    return out


def raw(out: Path) -> List[dict]:
    return [orjson.loads(line) for f in sorted(out.glob("*.jsonl"))
            for line in f.read_bytes().splitlines()]


def test_loaders_type_every_kind(outputs):
    frames = load([outputs])
    recs = raw(outputs)
    for kind, df in frames.items():
        expected = [r for r in recs if r["type"] == kind]
        if kind == "bar":  # only each bar's latest revision
            expected = {(r["product"], r["interval_s"], r["start"]): r for r in
                        sorted(expected, key=lambda r: r["revision"])}.values()
        assert len(df) == len(list(expected)), kind
        for column, dtype in SCHEMAS[kind].items():
            assert str(df[column].dtype) == dtype, (kind, column, df[column].dtype)
        assert list(df.columns[:len(SCHEMAS[kind])]) == list(SCHEMAS[kind])
    s = frames["summary"]
    first = next(r for r in recs if r["type"] == "summary" and r["ts_exchange"] is not None)
    row = s[(s["product"] == first["product"]) & (s["seq"] == first["seq"])].iloc[0]
    assert row["ts_exchange"] == pd.Timestamp(first["ts_exchange"], unit="ms", tz="UTC")
    assert row["bid_px"] == first["bid_px"] and row["ask_levels"] == first["ask_levels"]
    assert set(frames["trade"]["side"].astype(str)) == {"buy", "sell"}
    assert frames["bar"]["complete"].dtype == "boolean"


def test_loader_filters_products_and_half_open_time_range(outputs):
    recs = [r for r in raw(outputs) if r["type"] == "trade" and r["product"] == "ETH-USD"]
    times = sorted(r["ts_exchange"] for r in recs)
    start = datetime.fromtimestamp(times[10] / 1000.0, timezone.utc)
    end = datetime.fromtimestamp(times[50] / 1000.0, timezone.utc)
    lo, hi = start.timestamp() * 1000.0, end.timestamp() * 1000.0
    df = load([outputs], ["trade"], ["coinbase:ETH-USD"], start, end)["trade"]
    assert 0 < len(df) == sum(1 for t in times if lo <= t < hi)
    assert set(df["product"].astype(str)) == {"ETH-USD"}
    assert len(load([outputs], ["trade"], ["BTCUSDT"])["trade"]) == \
        sum(1 for r in raw(outputs) if r["type"] == "trade" and r["product"] == "BTCUSDT")


def test_latest_bar_revision_wins(tmp_path, outputs):
    bars = [r for r in raw(outputs) if r["type"] == "bar"][:3]
    revised = dict(bars[0], revision=1, volume=bars[0]["volume"] + 1.0)
    (tmp_path / "bars.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n"
                                                   for r in bars + [revised]))
    df = load([tmp_path], ["bar"])["bar"]
    assert len(df) == 3
    assert df["volume"].max() == revised["volume"]
    assert len(load([tmp_path], ["bar"], revisions=True)["bar"]) == 4


def reference_vol(ts_ms: List[float], mids: List[float], dt_s: float) -> Dict[int, float]:
    """Brute force: the last mid at or before each grid point, log returns, mean of the
    squares per hour of the return's end, annualised over a 24/7 year."""
    step = dt_s * 1000.0
    first = math.ceil(ts_ms[0] / step) * step
    grid = [first + k * step for k in range(int((ts_ms[-1] - first) // step) + 2)
            if first + k * step <= math.ceil(ts_ms[-1] / step) * step]
    values = []
    for g in grid:
        before = [m for t, m in zip(ts_ms, mids) if t <= g]
        values.append(before[-1])
    per_hour: Dict[int, List[float]] = {}
    for k in range(1, len(grid)):
        r = math.log(values[k] / values[k - 1])
        hour = int(grid[k] // 3_600_000) % 24
        per_hour.setdefault(hour, []).append(r * r)
    return {h: math.sqrt(sum(v) / len(v) * YEAR_S / dt_s) for h, v in per_hour.items()
            if len(v) >= 2}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400_000), st.floats(0.5, 2.0)), min_size=2,
                max_size=40),
       st.sampled_from([1.0, 5.0, 60.0]))
def test_volatility_by_hour_matches_brute_force(steps, dt_s):
    t0 = 1_723_161_000_000.0  # 2024-08-08 23:50 UTC: returns span an hour boundary
    ts, mids, t, mid = [], [], t0, 100.0
    for gap, factor in steps:
        t += gap
        mid *= factor
        ts.append(t)
        mids.append(mid)
    summaries = pd.DataFrame({"ts_exchange": pd.to_datetime(ts, unit="ms", utc=True),
                              "mid": mids})
    got = volatility_by_hour(summaries, dt_s)
    want = reference_vol(ts, mids, dt_s)
    assert sorted(got["hour"]) == sorted(want)
    for hour, vol in zip(got["hour"], got["vol"]):
        assert vol == pytest.approx(want[hour], rel=1e-9, abs=1e-12)


def test_depth_book_is_the_flows_book(outputs):
    summaries = [r for r in raw(outputs) if r["type"] == "summary" and r["product"] == "BTC-USD"]
    mid_run = summaries[len(summaries) // 2]
    at = datetime.fromtimestamp(math.ceil(mid_run["ts_recv"] * 1000.0) / 1e6, timezone.utc)
    book = book_at([COINBASE], "coinbase:BTC-USD", at)
    last = [s for s in summaries if s["ts_recv"] <= at.timestamp() * 1000.0][-1]
    assert book.valid
    assert (book.bids[0], book.asks[0]) == ((last["bid_px"], last["bid_sz"]),
                                            (last["ask_px"], last["ask_sz"]))
    assert (len(book.bids), len(book.asks)) == (last["bid_levels"], last["ask_levels"])
    assert all(a[0] > b[0] for a, b in zip(book.bids, book.bids[1:]))  # best first


@pytest.mark.parametrize("chart, extra", [
    ("book", ["--product", "coinbase:ETH-USD"]), ("imbalance", []), ("ofi", []),
    ("volume", ["--product", "BTCUSDT"]), ("volatility", ["--sample", "1"]),
])
def test_every_chart_renders(outputs, tmp_path, chart, extra):
    png = tmp_path / f"{chart}.png"
    proc = lobstream("plot", chart, outputs, "-o", png, *extra)
    assert proc.returncode == 0, proc.stderr
    assert imread(png).shape[1] >= 1000


def test_depth_chart_and_time_range(tmp_path):
    png = tmp_path / "depth.png"
    proc = lobstream("plot", "depth", COINBASE, "--product", "BTC-USD", "--at",
                     "2026-08-09T21:06:00", "--span", "0.5", "-o", png)
    assert proc.returncode == 0, proc.stderr
    assert parse_time("2026-08-09T21:06:00").tzinfo is not None
    proc = lobstream("plot", "book", tmp_path, "-o", tmp_path / "none.png")
    assert proc.returncode == 1 and "no records" in proc.stderr


def colour_share(png: Path, rgb: str) -> float:
    """The share of the canvas close to the colour ``#rrggbb``."""
    img = imread(png)[..., :3]
    want = np.array([int(rgb[i:i + 2], 16) / 255.0 for i in (1, 3, 5)])
    return float((np.abs(img - want).max(axis=-1) < 0.08).mean())


def test_readme_charts_from_the_bundled_recordings(tmp_path):
    """What CI draws (and the README shows), by the script the README names."""
    subprocess.run(["bash", str(ROOT / "scripts" / "charts.sh"), str(tmp_path)], cwd=ROOT,
                   env=clean_env(PY=sys.executable),
                   check=True, capture_output=True, timeout=240)
    book, volume = tmp_path / "book_coinbase_eth_usd.png", tmp_path / "volume_binance_btcusdt.png"
    for png in (book, volume):
        height, width = imread(png).shape[:2]
        assert width >= 1000 and height >= 300, png
    assert colour_share(book, "#2c3e50") > 0.0003  # the mid line (thin, antialiased)
    assert colour_share(book, "#e67e22") > 0.0003  # the microprice
    assert colour_share(volume, "#1a9850") > 0.01 and colour_share(volume, "#d73027") > 0.01

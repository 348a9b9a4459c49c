"""Latency from the exchange's send to the sink's write, over real websockets.

The simulator (``python -m sources.simulator --rate R``, its own process) serves
BTC-USD and ETH-USD from the Coinbase recording, one connection each, pacing book
frames at ``R`` per second per connection, and logs when it sent each one. The
production flow with websocket sources (``exit_on_close``) runs in another
process (``python -m benchmarks.latency``, the child half of this module) with a
counting sink that stamps ``time.time()`` on each written batch. Records are
joined with the send log on ``(venue, product, sequence_num)``. Both processes
read one clock, so no offset is involved.

Steady state means update frames sent at least 1 s after their product's
snapshot (the 46,000-level snapshot leaves a backlog behind it, reported apart).
The rate the simulator achieved is taken from its own send log, so a machine too
busy to pace at 10,000 frames/s shows as such.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any, Dict, List, Tuple

from benchmarks import data
from benchmarks.common import percentile, run_module, simulator
from benchmarks.flows import StampingSink, bench_flow, read_stats

PRODUCTS = ["BTC-USD", "ETH-USD"]


def measure(rec: data.CoinbaseRecording, work: Path, total_rate: int,
            frames_per_product: int) -> Dict[str, Any]:
    """Latency percentiles at ``total_rate`` book frames/s over both connections."""
    name = f"latency_{total_rate}"
    meta = data.build_per_product(rec, work / f"{name}_captures", frames_per_product)
    send_log = work / f"{name}_send_log.csv"
    per_connection = total_rate / len(PRODUCTS)
    args = ["--rate", f"{per_connection:g}", "--send-log", str(send_log)]
    for c in sorted(Path(meta["dir"]).glob("*.jsonl")):
        args += ["--capture", str(c)]
    out = work / name
    with simulator(args, work / f"{name}_simulator.log") as (url, _):
        run_module("benchmarks.latency", ["--url", url], out / "child.json",
                   work / f"{name}_flow.log", 600)
    sent: Dict[Tuple[str, str, int], float] = {}
    with open(send_log) as f:
        for r in csv.DictReader(f):
            if r["seq"]:
                sent[(r["venue"], r["product"], int(r["seq"]))] = float(r["t_send_ms"])
    written = [w for s in read_stats(out) for w in s["written"]]
    lat: Dict[str, List[Tuple[float, float]]] = {}
    unjoined = 0
    for venue, product, seq, t_ms in written:
        t_send = sent.get((venue, product, seq))
        if t_send is None:
            unjoined += 1
            continue
        lat.setdefault(product, []).append((t_send, t_ms - t_send))
    updates: List[float] = []
    steady: List[float] = []
    snapshot_ms = {}
    t_first, t_last = [], []
    for product, pairs in lat.items():
        pairs.sort()
        snapshot_ms[product] = pairs[0][1]
        t_snap = pairs[0][0]
        t_first.append(pairs[1][0] if len(pairs) > 1 else t_snap)
        t_last.append(pairs[-1][0])
        for t_send, ms in pairs[1:]:
            updates.append(ms)
            if t_send - t_snap >= 1000.0:
                steady.append(ms)
    if not updates:
        raise RuntimeError(f"{name}: no record could be joined with the send log")
    updates.sort()
    steady.sort()
    sel = steady or updates
    span_s = (max(t_last) - min(t_first)) / 1000.0
    return {"p50_ms": percentile(sel, 50), "p99_ms": percentile(sel, 99), "max_ms": sel[-1],
            "samples": len(sel), "window": "steady state" if steady else
            "all updates (run too short for a steady state)",
            "all_updates": {"p50_ms": percentile(updates, 50), "p99_ms": percentile(updates, 99),
                            "max_ms": updates[-1], "samples": len(updates)},
            "snapshot_frame_ms": snapshot_ms, "unjoined": unjoined,
            "rate_asked": total_rate, "rate_achieved": len(updates) / span_s if span_s > 0
            else None, "connections": len(lat), "capture": meta}


def main() -> None:
    """The flow half: websocket sources to the simulator at ``--url``."""
    from bytewax.testing import run_main

    p = argparse.ArgumentParser(description="latency run's flow (benchmarks.latency)")
    p.add_argument("--url", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    run_main(bench_flow(StampingSink(str(out.parent)), args.url + "/coinbase", PRODUCTS))
    out.write_text("{}")


if __name__ == "__main__":
    main()

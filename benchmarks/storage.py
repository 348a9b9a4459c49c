"""Benchmark rows for the tick store and the SQL bar sink (``python -m benchmarks.run``).

Inputs are the flow's own records from the Coinbase recording (summaries and 1 s
bars), tiled in time to the row counts measured: the records' shapes and values
are real, only their times are shifted, a day's worth per product.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import orjson

from benchmarks.data import COINBASE_CAPTURE
from benchmarks.flowrun import run_flow
from sinks.store.layout import Root, day_of
from sinks.store.read import query, read
from sinks.store.writer import StoreWriter
from sinks.sql import BarTable, row

DAY_MS = 86_400_000


def flow_records(work: Path) -> List[Dict[str, Any]]:
    """Summaries and 1 s bars of the Coinbase recording, as the flow writes them
    (the flow runs once per work directory)."""
    out = work / "storage_flow" / "jsonl"
    if not out.is_dir():
        run_flow(str(COINBASE_CAPTURE), work, "storage_flow",
                 settings={"LOBSTREAM_BARS_INTERVALS": "1s"}, keep_output=True)
    return [orjson.loads(line) for f in sorted(out.iterdir())
            for line in f.read_bytes().splitlines()]


def tiled(records: List[Dict[str, Any]], n: int) -> List[Dict[str, Any]]:
    """``n`` rows: copies of ``records`` back to back from the start of their UTC day."""
    t0 = min(r["ts_exchange"] for r in records)
    span = max(r["ts_exchange"] for r in records) - t0 + 1.0
    back = t0 - (t0 // DAY_MS) * DAY_MS
    out: List[Dict[str, Any]] = []
    k = 0
    while len(out) < n:
        shift = k * span - back
        out.extend({**r, "ts_exchange": r["ts_exchange"] + shift, "ts_recv": r["ts_recv"] + shift}
                   for r in records[:n - len(out)])
        k += 1
    return out


def _median(fn: Callable[[], float], repeats: int) -> Tuple[float, List[float]]:
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def store_rows(bench: Any) -> None:
    """store_write (rows/s) and store_day_query (ms) rows."""
    work = Path(tempfile.mkdtemp(prefix="store-", dir=bench.work))
    records = flow_records(bench.work)
    summaries = [r for r in records if r["type"] == "summary" and r["product"] == "BTC-USD"]
    n = 20_000 if bench.smoke else 1_000_000
    per_commit = 2_000 if bench.smoke else 20_000
    rows = tiled(summaries, n)
    day = day_of(rows[0]["ts_exchange"])
    assert day_of(rows[-1]["ts_exchange"]) == day  # one partition-day

    def write_once() -> float:
        root = Root(str(Path(tempfile.mkdtemp(dir=work))))
        writer = StoreWriter(root, "replace", max_files=16)
        t = time.perf_counter()
        for i in range(0, n, per_commit):
            writer.add(rows[i:i + per_commit])
            writer.commit()
        elapsed = time.perf_counter() - t
        write_once.root = root  # type: ignore[attr-defined]
        return n / elapsed

    rate, rates = _median(write_once, 2 if bench.smoke else 3)
    root: Root = write_once.root  # type: ignore[attr-defined]
    files = sum(1 for p in Path(root.base).rglob("*.parquet") if "_tmp" not in p.parts)
    size = sum(p.stat().st_size for p in Path(root.base).rglob("*.parquet"))
    bench.row("store_write", "Tick store write, summaries", rate, "rows/s",
              notes=f"{n:,} rows, commits of {per_commit:,}",
              rates=rates, rows=n, per_commit=per_commit, parquet_files=files,
              bytes_on_disk=size, bytes_per_row=size / n,
              what="StoreWriter.add + commit: typed Arrow table per commit, one zstd Parquet "
                   "file written to _tmp and renamed, one index entry; merges into a new "
                   "version every 16 files (included). One day of BTC-USD summaries (real "
                   "records, times tiled over the day), local disk")
    sql = (f"SELECT count(*) AS n, avg(spread_bps) AS s, max(mid) AS m, sum(ofi) AS o "
           f"FROM summary WHERE venue = 'coinbase' AND product = 'BTC-USD' AND date = '{day}'")

    def query_once() -> float:
        t = time.perf_counter()
        got = query(root, sql)
        assert int(got["n"][0]) == n
        return (time.perf_counter() - t) * 1000.0

    ms, times = _median(query_once, 2 if bench.smoke else 5)

    def pandas_once() -> float:
        t = time.perf_counter()
        assert len(read(root, "summary", "coinbase", "BTC-USD")) == n
        return (time.perf_counter() - t) * 1000.0

    pandas_ms, pandas_times = _median(pandas_once, 2 if bench.smoke else 5)
    bench.row("store_day_query", "DuckDB query, one day of summaries", ms, "ms",
              notes=f"{n:,} rows; pandas read() {pandas_ms:.0f} ms", times_ms=times, rows=n,
              pandas_read_ms=pandas_ms, pandas_times_ms=pandas_times, sql=sql,
              what="sinks.store.read.query: resolve the day's files through the index, "
                   "register each kind as an Arrow dataset, DuckDB aggregate over one day "
                   "of one product (count, mean spread, max mid, summed OFI); and the same "
                   "day as a pandas DataFrame with read()")


def sql_rows(bench: Any, servers: Optional[Dict[str, str]] = None) -> None:
    """sql_upsert rows: bars/s into SQLite (and PostgreSQL / MariaDB when given)."""
    work = Path(tempfile.mkdtemp(prefix="sql-", dir=bench.work))
    bars = [r for r in flow_records(bench.work) if r["type"] == "bar"]
    n = 5_000 if bench.smoke else 100_000
    batch = 1_000
    tiles = []
    k = 0
    while len(tiles) < n:
        for b in bars:
            shift = k * 86_400_000 * 10
            tiles.append({**b, "start": b["start"] + shift, "end": b["end"] + shift})
        k += 1
    tiles = tiles[:n]
    targets = {"sqlite": f"sqlite:///{work / 'bench.sqlite'}", **(servers or {})}
    for name, dsn in targets.items():
        table = BarTable(dsn, "bench_bars")
        table.open()
        try:
            rates = []
            for attempt in range(2):  # first inserts, then the same bars again (a replay)
                t = time.perf_counter()
                for i in range(0, n, batch):
                    table.upsert([row(r) for r in tiles[i:i + batch]])
                rates.append(n / (time.perf_counter() - t))
        finally:
            table.close()
        key = "sql_upsert" if name == "sqlite" else f"sql_upsert_{name}"
        bench.row(key, f"Bar upserts, {name}", rates[0], "bars/s",
                  notes=f"{n:,} bars, {batch:,} per transaction; replay {rates[1]:,.0f}/s",
                  insert_rate=rates[0], replay_rate=rates[1], bars=n, per_transaction=batch,
                  what="BarTable.upsert: executemany of the dialect's upsert (keep the "
                       "highest revision) in one transaction per batch, as the sink does per "
                       "epoch; then the same bars again (every row kept, nothing changes)")

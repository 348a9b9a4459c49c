"""Smoke test: ``benchmarks/run.py --quick`` runs every row and writes sane JSON.

Not a timed assertion: at ``--quick`` scale the numbers mean nothing. It checks
that every row ran (captures built, the flow run in one and two processes with the
books placed on the workers reading their streams, the simulator served the latency
run) and produced finite numbers.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent

ROWS = (
    "parse_ceiling", "book_core", "book_core_deribit", "python_pipeline", "full_flow_1w",
    "full_flow_btc", "naive_btc", "snapshot_apply", "snapshot_replace", "epoch_snapshot",
    "two_process", "two_process_coinbase", "latency", "bytes_per_level", "peak_rss",
    "kafka_flow_1w", "kafka_rebuild",
)
TARGETS = ("full_flow_1w", "naive_btc", "snapshot_apply", "epoch_snapshot", "latency",
           "two_process", "bytes_per_level")


def finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_quick_benchmark_writes_every_row(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = orjson.loads(out.read_bytes())

    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["python"] and machine["date"]
    assert machine["packages"]["bytewax"] == "0.21.1"

    rows = results["rows"]
    assert set(ROWS) <= set(rows), f"missing rows: {set(ROWS) - set(rows)}"
    for key in ROWS:
        row = rows[key]
        assert row["name"] and row["unit"], key
        assert finite(row["value"]) and row["value"] > 0, (key, row["value"])
        if row["ratio"] is not None:
            assert finite(row["ratio"]) and row["ratio"] > 0, (key, row["ratio"])
    for key in TARGETS:
        assert isinstance(rows[key]["met"], bool) and rows[key]["target"], key
    for key in ("naive_btc", "full_flow_1w", "two_process"):
        assert finite(rows[key]["ratio"]), key

    # Sanity checks the run itself makes, visible in the details.
    for key in ("two_process", "two_process_coinbase"):
        details = rows[key]["details"]
        assert details["outputs_identical"] is True, key
        # The real placement: each book on the worker that reads its stream.
        assert details["books_on_their_streams_worker"] is True, key
        assert len(details["keys_per_worker_2p"]) == 2, key
    assert rows["latency"]["details"]["unjoined"] == 0
    lat = rows["latency"]["details"]
    assert all(finite(lat[k]) for k in ("p50_ms", "p99_ms", "max_ms"))
    # The table went to stdout, one line per row.
    for key in ROWS:
        assert rows[key]["name"] in proc.stdout

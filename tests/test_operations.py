"""Operating the flow: lobstream's own metrics endpoint on loopback, and one-line
errors at start for inputs that cannot work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COINBASE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_flow(env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.orderbook:flow"],
                          cwd=ROOT, env=dict(os.environ, LOBSTREAM_STATUS_INTERVAL="0", **env),
                          capture_output=True, timeout=timeout)


def test_lobstreams_own_metrics_endpoint_serves_on_loopback_only(tmp_path):
    port = free_port()
    env = dict(os.environ, LOBSTREAM_REPLAY=str(COINBASE), LOBSTREAM_REPLAY_SPEED="1",
               LOBSTREAM_JSONL_DIR=str(tmp_path), LOBSTREAM_METRICS_ADDR=f"127.0.0.1:{port}",
               LOBSTREAM_STATUS_INTERVAL="0")
    proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.orderbook:flow"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        text = ""
        sample = 'lobstream_book_events_total{event="snapshots",product="BTC-USD",venue="coinbase"}'
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sample not in text:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        assert sample in text
        assert "lobstream_queue_bytes" in text
        listening = Path("/proc/net/tcp").read_text()
        # 0100007F is 127.0.0.1 in /proc's byte order; the port in hex
        assert f"0100007F:{port:04X} 00000000:0000 0A" in listening
        assert f"00000000:{port:04X} 00000000:0000 0A" not in listening
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_replay_path_that_is_not_a_capture_is_one_line_at_start():
    proc = run_flow({"LOBSTREAM_REPLAY": str(ROOT / "README.md")})
    assert proc.returncode != 0
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lobstream: configuration error: ")
    assert "README.md" in err[0] and "convert" in err[0]
    assert "Traceback" not in proc.stderr.decode()


def test_an_unwritable_output_directory_is_one_line_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_flow({"LOBSTREAM_REPLAY": str(COINBASE), "LOBSTREAM_JSONL_DIR": str(blocker / "out")})
    assert proc.returncode != 0
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lobstream: configuration error: "), err
    proc = run_flow({"LOBSTREAM_REPLAY": str(COINBASE), "LOBSTREAM_JSONL_DIR": str(tmp_path),
                     "LOBSTREAM_VENUES": "coinbase", "LOBSTREAM_RECORD_DIR": str(blocker)})
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1, err

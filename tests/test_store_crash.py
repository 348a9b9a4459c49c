"""kill -9 in the middle of writing: no partial file is ever visible, and a restart
from Bytewax recovery ends with every row exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

import pyarrow.parquet as pq

from sinks.store.layout import INDEX_DIR, TMP_DIR
from sinks.store.read import query

ROOT = Path(__file__).resolve().parent.parent
N = 3000


def run_flow(store: Path, recovery: Path) -> subprocess.Popen:
    env = dict(os.environ, CRASH_ROOT=str(store), CRASH_ROWS=str(N))
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "tests.store_crash_flow:flow",
         "-r", str(recovery), "-s", "1", "-b", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def commits(store: Path) -> int:
    index = store / INDEX_DIR
    return sum(1 for _ in index.rglob("*.json")) if index.exists() else 0


@pytest.mark.timeout(240)
def test_kill_9_mid_write_then_resume_has_every_row_once(tmp_path):
    store, recovery = tmp_path / "store", tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True,
                   cwd=ROOT, capture_output=True, timeout=60)
    proc = run_flow(store, recovery)
    deadline = time.monotonic() + 90
    while commits(store) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    before = query(str(store), "SELECT count(*) AS n FROM trade")["n"][0]
    assert 0 < before < N
    # Nothing partial under a data file's name: every visible file is whole.
    visible = [p for p in store.rglob("*.parquet") if TMP_DIR not in p.parts]
    for path in visible:
        pq.read_metadata(path)
    assert all(p.suffix == ".part" for p in (store / TMP_DIR).glob("*")) \
        if (store / TMP_DIR).exists() else True
    again = run_flow(store, recovery)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err.decode()[-2000:]
    got = query(str(store), "SELECT trade_id, count(*) AS n FROM trade GROUP BY trade_id")
    assert len(got) == N and set(got["n"]) == {1}
    assert set(got["trade_id"]) == {str(i) for i in range(N)}

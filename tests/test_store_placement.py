"""Where Bytewax builds the store sink's partitions, checked in a real two-process run:
every product's rows are written by the process whose stateful step holds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

from sinks.partitions import PARTS, part_of
from sinks.store.index import read_entries
from sinks.store.layout import Root
from sinks.store.read import query
from sources.runtime.placement import worker_of
from tests.test_websocket_flow import free_ports

ROOT = Path(__file__).resolve().parent.parent


def test_partition_arithmetic_matches_the_worker_hash():
    keys = [f"coinbase:P{i}" for i in range(200)] + [f"deribit:BTC-{i}#3" for i in range(200)]
    for workers in (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16):
        assert PARTS % workers == 0
        assert all(part_of(k) % workers == worker_of(k, workers) for k in keys)


@pytest.mark.timeout(180)
def test_two_processes_write_each_product_where_its_state_is(tmp_path):
    store = tmp_path / "store"
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    env = dict(os.environ, PLACE_ROOT=str(store))
    procs = [subprocess.Popen([sys.executable, "-m", "bytewax.run",
                               "tests.store_placement_flow:flow", "-i", str(i), "-a", addresses],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    results = [p.communicate(timeout=150) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()[-2000:]
    root = Root(str(store))
    writers = {}
    for pd in root.walk_partitions():
        (pid,) = {e["pid"] for e in read_entries(root, pd)}
        writers[pd.product] = pid
    stamped = query(root, "SELECT product, trade_id FROM trade")
    owners = {}
    for product, trade_id in stamped.itertuples(index=False):
        owners.setdefault(product, set()).add(int(trade_id.split("@")[1]))
    assert len(writers) == 24 and len(set(writers.values())) == 2  # both processes wrote
    assert {p: {pid} for p, pid in writers.items()} == owners

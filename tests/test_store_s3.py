"""The store on an object store: moto's S3 server, run as a plain process on loopback,
behind the same reads, as-of and DuckDB queries as a local directory."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("moto")

import pyarrow.fs as pafs
from bytewax.testing import run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow
from sinks.store import KINDS
from sinks.store.layout import Root
from sinks.store.read import query, read
from sinks.store.writer import StoreWriter
from tests.test_store import DAY0, trade
from tests.test_websocket_flow import free_ports

RECORDING = Path(__file__).resolve().parent.parent / "recordings" / \
    "coinbase_advanced_btc_eth.jsonl.gz"


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[str]:
    (port,) = free_ports(1)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:  # it logs every request: a pipe would fill and stall it
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()[-1500:]
                assert time.monotonic() < deadline, "moto did not listen within 60 s"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def bucket(s3, monkeypatch, request) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    name = f"ticks-{request.node.name.replace('_', '-')[5:40].lower().strip('-')}"
    fs = pafs.S3FileSystem(endpoint_override=s3, scheme="http", region="us-east-1",
                           allow_bucket_creation=True)
    fs.create_dir(name)
    return f"s3://{name}/store?endpoint_override={s3}&scheme=http&region=us-east-1"


def test_the_flow_writes_to_s3_and_reads_back(bucket, tmp_path):
    cfg = Config(replay=[str(RECORDING)], sinks=["store"], bar_intervals=(1000,))
    cfg.store.update(root=bucket, mode="replace")
    run_main(build_flow(cfg))
    local = tmp_path / "local"
    cfg.store = {**cfg.store, "root": str(local)}
    run_main(build_flow(cfg))
    for kind in KINDS:
        for product in ("BTC-USD", "ETH-USD"):
            a = read(bucket, kind, "coinbase", product, arrow=True, all_revisions=True)
            b = read(str(local), kind, "coinbase", product, arrow=True, all_revisions=True)
            assert a.equals(b) and (a.num_rows > 0 or kind == "ticker"), (kind, product)
    sql = "SELECT product, count(*) AS n, max(mid) AS m FROM summary GROUP BY ALL ORDER BY 1"
    assert query(bucket, sql).equals(query(str(local), sql))


def test_as_of_on_s3(bucket):
    root = Root(bucket)
    writer = StoreWriter(root)
    writer.add([trade(i, DAY0 + i) for i in range(5)])
    writer.commit()
    between = time.time_ns()
    writer.add([trade(i, DAY0 + i) for i in range(5, 8)])
    writer.commit()
    assert len(read(root, "trade", "coinbase", "BTC-USD", as_of=between)) == 5
    assert len(read(root, "trade", "coinbase", "BTC-USD")) == 8


def test_fsspec_filesystems_work_too():
    root = Root("memory://lobstream-test/store")
    assert not root.local
    writer = StoreWriter(root)
    writer.add([trade(i, DAY0 + i) for i in range(3)])
    writer.commit()
    assert list(read(root, "trade", "coinbase", "BTC-USD")["trade_id"]) == ["0", "1", "2"]

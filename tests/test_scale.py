"""Scale and resources: thousands of products under the default open-file limit, a
crossed book resynchronised across processes, and bounded memory behind a stalled
sink."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
import bytewax.operators as op

from dataflows.orderbook import BookStep
from sources.capture.format import read_capture
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.simulator import SimulatorThread
from sources.simulator.market import load_recording
from tests.helpers import crossing, read_dir, websocket_source

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
DERIBIT = RECORDINGS / "deribit_options.jsonl.gz"
COINBASE = RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"


def free_ports(n: int) -> List[int]:
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def cloned_capture(path: Path, clones: int, streams: int) -> int:
    """A capture of ``clones`` copies of every instrument of the Deribit recording,
    each copy renamed (a strike digit added), spread over ``streams`` streams;
    returns the number of products."""
    frames = [f for f in read_capture(DERIBIT) if f.dir == "recv"]
    names = sorted({orjson.loads(f.raw)["params"]["data"]["instrument_name"] for f in frames
                    if b'"method":"subscription"' in f.raw and b'"book.' in f.raw})
    header = orjson.dumps({"lobstream_capture": 1, "source": "tests/test_scale.py clones",
                           "created": frames[0].ts})
    with open(path, "wb") as out:
        out.write(header + b"\n")
        for k in range(clones):
            stream = f"deribit:clones{k % streams}"
            renames = [(n.encode(), n.replace("-C", f"{k}-C").replace("-P", f"{k}-P").encode())
                       for n in names]
            for f in frames:
                raw = f.raw
                for old, new in renames:
                    raw = raw.replace(old, new)
                head = orjson.dumps({"ts": f.ts, "venue": "deribit", "stream": stream,
                                     "dir": "recv"})
                out.write(head[:-1] + b',"msg":' + raw + b"}\n")
    return clones * len(names)


@pytest.mark.timeout(300)
def test_three_thousand_replayed_products_under_the_default_open_file_limit(tmp_path):
    capture = tmp_path / "clones.jsonl"
    products = cloned_capture(capture, 300, 30)
    assert products == 3000
    out = tmp_path / "out"
    env = dict(os.environ, LOBSTREAM_REPLAY=str(capture), LOBSTREAM_JSONL_DIR=str(out),
               LOBSTREAM_STATUS_INTERVAL="0", LOBSTREAM_BARS_INTERVALS="")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    proc = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.orderbook:flow"],
                          cwd=ROOT, env=env, preexec_fn=limit, capture_output=True, timeout=280)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    files = sorted(out.glob("*.jsonl"))
    assert len(files) == 3000
    for f in files[::97]:  # a sample: every line whole, and the book synced
        recs = [orjson.loads(line) for line in f.read_bytes().splitlines()]
        statuses = [r["state"] for r in recs if r["type"] == "status"]
        assert statuses == ["synced"]


def _worker_products(stderr: str) -> Dict[int, set]:
    found: Dict[int, set] = {}
    for m in re.finditer(r"worker (\d+) of \d+ opens \d+ connections for \d+ products: ([^\n]*)",
                         stderr):
        found[int(m.group(1))] = set(m.group(2).replace(" ...", "").split())
    return found


def test_two_processes_keep_every_book_with_its_socket_and_resync_a_crossed_one(tmp_path):
    """Two ``python -m bytewax.run -i/-a`` processes against the simulator: each
    writes exactly the products whose connections it opened (so Bytewax routed every
    book to the worker of its socket, as placement planned), and a book that crosses
    is resubscribed by its own process: invalid, then synced again from a new
    snapshot."""
    recording = load_recording([COINBASE])
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    with SimulatorThread(recording, rate=200, retime="none",
                         frame_filters=crossing("BTC-USD", 150)) as sim:
        base = dict(os.environ, LOBSTREAM_VENUES="coinbase",
                    LOBSTREAM_COINBASE_PRODUCTS="BTC-USD,ETH-USD",
                    LOBSTREAM_COINBASE_URL=sim.url + "/coinbase",
                    LOBSTREAM_COINBASE_REST_URL=sim.http_url + "/coinbase",
                    LOBSTREAM_EXIT_ON_CLOSE="1", LOBSTREAM_STATUS_INTERVAL="0")
        procs = [subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.orderbook:flow", "-i", str(i),
             "-a", addresses], cwd=ROOT, env=dict(base, LOBSTREAM_JSONL_DIR=str(tmp_path / f"p{i}")),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()[-2000:]
    opened: Dict[int, set] = {}
    for _, err in results:
        opened.update(_worker_products(err.decode()))
    assert opened == {0: {"coinbase:BTC-USD"}, 1: {"coinbase:ETH-USD"}} or \
        opened == {0: {"coinbase:ETH-USD"}, 1: {"coinbase:BTC-USD"}}
    for i in range(2):
        written = {f"coinbase:{name[len('coinbase_'):-len('.jsonl')]}"
                   for name in read_dir(tmp_path / f"p{i}")}
        assert written == opened[i]
    btc_dir = next(tmp_path / f"p{i}" for i in range(2) if "coinbase:BTC-USD" in opened[i])
    statuses = [(r["state"], r["reason"]) for r in read_dir(btc_dir)["coinbase_BTC-USD.jsonl"]
                if r["type"] == "status"]
    assert statuses == [("synced", "snapshot"), ("invalid", "crossed"), ("synced", "snapshot")]


class _StalledSink(DynamicSink):
    """A sink that blocks the worker for ``seconds`` on its first batch, as a full
    disk or a slow database would."""

    def __init__(self, seconds: float, got: List[Any]) -> None:
        self.seconds, self.got = seconds, got

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        sink = self

        class Part(StatelessSinkPartition):
            stalled = False

            def write_batch(self, items: List[Any]) -> None:
                if not Part.stalled:
                    Part.stalled = True
                    time.sleep(sink.seconds)
                sink.got.extend(items)

        return Part()


def test_a_stalled_sink_keeps_memory_bounded_and_the_books_recover():
    """The Coinbase recording (two books of 46,000 and 23,334 levels) at 200 frames/s
    per connection into a worker whose sink stalls for 3 s: the inbox never holds
    more than its bounds (200 frames, 6 MiB plus at most one frame), frames past them
    are dropped and counted, the books report ``overflow``, resubscribe and come
    back ``synced``."""
    recording = load_recording([COINBASE])
    registry, resync, got = Registry(), ResyncRequests(), []
    bound = 6 * 2**20
    with SimulatorThread(recording, rate=200, retime="none") as sim:
        source = websocket_source("coinbase", ["BTC-USD", "ETH-USD"], sim.url + "/coinbase",
                                  {"trades": False}, 2, exit_on_close=True, registry=registry,
                                  resync=resync, queue_bytes=bound, queue_frames=200)
        flow = Dataflow("stall")
        books = op.stateful("book", op.input("in", flow, source),
                            BookStep(10, 1e9, resync, registry))
        op.output("out", books, _StalledSink(3.0, got))
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run_main(flow)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (inbox,) = registry.inboxes
    assert inbox.dropped_total > 0
    assert inbox.peak_bytes <= bound + 5_200_000  # the bound, plus at most one snapshot frame
    assert inbox.peak_frames <= 200
    statuses = [(r["product"], r["state"], r["reason"]) for _, r in got if r["type"] == "status"]
    for product in ("BTC-USD", "ETH-USD"):
        mine = [(s, r) for p, s, r in statuses if p == product]
        assert ("invalid", "overflow") in mine and mine[-1] == ("synced", "snapshot"), mine
    (feed,) = registry.feeds
    assert feed.counts["overflows"] >= 1 and feed.counts["dropped_overflow"] > 0
    print(f"peak inbox {inbox.peak_bytes / 2**20:.1f} MiB, dropped {inbox.dropped_total}, "
          f"max RSS grew {(rss1 - rss0) / 1024:.0f} MiB")

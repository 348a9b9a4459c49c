"""The real lobstream dataflow with a counting sink in place of JSON lines.

:func:`bench_flow` calls :func:`dataflows.orderbook.build_flow` itself, so the flow
is the production one (input -> ``book`` stateful_flat_map -> data/console
filters -> sinks, console sink included); the only change is the configured sink:
a :class:`CountingSink` registered under the name ``bench``.

For ``python -m bytewax.run`` (the 1- vs 2-process comparison) use the factory
``benchmarks.flows:from_env()``, configured by ``LOBBENCH_*`` variables (see
:func:`from_env`).

Every sink partition writes its statistics, on close, to
``{out_dir}/sink-{pid}-{worker}.json``:

* ``counts``: records by type (summary, status, alert);
* ``t_first``/``n_first``: wall clock (``time.time()``) at the end of the first
  ``write_batch`` and the summaries it held, ``t_last``: at the end of the last
  one. The steady-state window ``t_first..t_last`` leaves out start-up and the
  first batch, which carries the snapshots;
* with ``digest``: per product (``venue:product``, from the record: the routing
  key depends on the worker count), the summary/status count and a BLAKE2 digest
  of every record without ``ts_recv``, in order, so runs can be compared;
* with ``latency``: ``(venue, product, seq, t_write_ms)`` of every summary, stamped
  with ``time.time()`` when its batch is written;
* ``peak_rss_bytes``: the process's peak RSS so far (``VmHWM``).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import orjson
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows.config import Config, VenueConfig
from dataflows.orderbook import build_flow
from sources.kafka.settings import KafkaSettings
from sinks import SINKS

Keyed = Tuple[str, Dict[str, Any]]


class CountingSink(DynamicSink[Keyed]):
    """Counts records (and optionally digests or timestamps them)."""

    def __init__(self, out_dir: str, digest: bool = False, latency: bool = False) -> None:
        self.out_dir = out_dir
        self.digest = digest
        self.latency = latency

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_CountingPartition":
        return _CountingPartition(self, worker_index, worker_count)


class _CountingPartition(StatelessSinkPartition[Keyed]):
    def __init__(self, sink: CountingSink, worker_index: int, worker_count: int) -> None:
        self._sink = sink
        self._worker = worker_index
        self._workers = worker_count
        self._counts: Dict[str, int] = {}
        self._t_first: Optional[float] = None
        self._n_first = 0
        self._t_last: Optional[float] = None
        self._batches = 0
        self._digests: Dict[str, Any] = {}
        self._key_counts: Dict[str, Dict[str, int]] = {}
        self._written: List[Tuple[str, str, Any, float]] = []

    def write_batch(self, items: List[Keyed]) -> None:
        counts = self._counts
        n_summary = 0
        for _, rec in items:
            kind = rec["type"]
            if kind == "summary":
                n_summary += 1
            else:
                counts[kind] = counts.get(kind, 0) + 1
        counts["summary"] = counts.get("summary", 0) + n_summary
        if self._sink.digest:
            self._digest(items)
        if self._sink.latency:
            t_ms = time.time() * 1000.0
            self._written.extend((rec["venue"], rec["product"], rec["seq"], t_ms)
                                 for _, rec in items if rec["type"] == "summary")
        now = time.time()
        if self._t_first is None:
            self._t_first, self._n_first = now, n_summary
        self._t_last = now
        self._batches += 1

    def _digest(self, items: List[Keyed]) -> None:
        for _, rec in items:
            key = f"{rec['venue']}:{rec['product']}"
            h = self._digests.get(key)
            if h is None:
                h = self._digests[key] = hashlib.blake2b(digest_size=16)
                self._key_counts[key] = {}
            h.update(orjson.dumps({k: v for k, v in rec.items() if k != "ts_recv"}))
            kc = self._key_counts[key]
            kc[rec["type"]] = kc.get(rec["type"], 0) + 1

    def close(self) -> None:
        stats = {
            "pid": os.getpid(), "worker": self._worker, "workers": self._workers,
            "counts": self._counts, "batches": self._batches,
            "t_first": self._t_first, "n_first": self._n_first, "t_last": self._t_last,
            "t_close": time.time(), "peak_rss_bytes": peak_rss(),
            "digests": {k: h.hexdigest() for k, h in self._digests.items()},
            "key_counts": self._key_counts,
            "written": self._written,
        }
        out = Path(self._sink.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"sink-{os.getpid()}-{self._worker}.json").write_bytes(orjson.dumps(stats))


def bench_flow(sink: CountingSink, *, replay: Sequence[str] = (),
               coinbase_url: Optional[str] = None, products: Sequence[str] = (),
               depth: int = 10, alert_bps: float = 10.0,
               kafka: Optional[KafkaSettings] = None) -> Dataflow:
    """The production flow for a replay (or, with ``coinbase_url``, live Coinbase
    websockets with ``exit_on_close``; with ``kafka``, a raw topic) and ``sink`` as
    its only data sink."""
    SINKS["bench"] = lambda options: sink
    cfg = Config(depth=depth, alert_bps=alert_bps, sinks=["bench"], replay=list(replay))
    if kafka is not None:
        cfg.input, cfg.kafka = "kafka", kafka
    if coinbase_url is not None:
        cfg.venues["coinbase"] = VenueConfig(list(products), coinbase_url)
        cfg.exit_on_close = True
    return build_flow(cfg)


def from_env() -> Dataflow:
    """Flow factory for ``python -m bytewax.run "benchmarks.flows:from_env()"``.

    ``LOBBENCH_REPLAY``: capture paths separated by ``os.pathsep``;
    ``LOBBENCH_OUT``: directory for sink statistics; ``LOBBENCH_DIGEST=1``: digest
    records too.
    """
    sink = CountingSink(os.environ["LOBBENCH_OUT"],
                        digest=os.environ.get("LOBBENCH_DIGEST") == "1")
    return bench_flow(sink, replay=os.environ["LOBBENCH_REPLAY"].split(os.pathsep))


def peak_rss() -> int:
    """This process's peak resident set size (``VmHWM``), in bytes; 0 if unknown.

    Read in-process: ``ru_maxrss`` of a child seen from the parent also counts the
    parent's memory the child was forked with, before it exec'd."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def read_stats(out_dir: Path) -> List[Dict[str, Any]]:
    """Every sink partition's statistics written under ``out_dir``."""
    return [orjson.loads(p.read_bytes()) for p in sorted(Path(out_dir).glob("sink-*.json"))]

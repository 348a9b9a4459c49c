"""The real lobstream dataflow with a sink that stamps when each summary is written.

:func:`bench_flow` calls :func:`dataflows.orderbook.build_flow` itself, so the flow
is the production one (input -> ``book`` step -> data/console filters -> sinks,
console sink included); the only change is the configured sink: a
:class:`StampingSink` registered under the name ``bench``. The latency rows
(:mod:`benchmarks.latency`) run it with websocket sources; the rows that measure
the flow's throughput run it as users do, with ``python -m bytewax.run`` and the
JSON-lines sink (:mod:`benchmarks.flowrun`).

Every sink partition writes, on close, ``{out_dir}/sink-{pid}-{worker}.json``
with ``written``: ``(venue, product, seq, t_write_ms)`` of every summary, stamped
with ``time.time()`` when its batch is written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import orjson
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows.config import Config, VenueConfig
from dataflows.orderbook import build_flow
from sinks import SINKS

Keyed = Tuple[str, Dict[str, Any]]


class StampingSink(DynamicSink[Keyed]):
    """Records when each summary reached the sink."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_StampingPartition":
        return _StampingPartition(self.out_dir, worker_index)


class _StampingPartition(StatelessSinkPartition[Keyed]):
    def __init__(self, out_dir: str, worker: int) -> None:
        self._out_dir = out_dir
        self._worker = worker
        self._written: List[Tuple[str, str, Any, float]] = []

    def write_batch(self, items: List[Keyed]) -> None:
        t_ms = time.time() * 1000.0
        self._written.extend((rec["venue"], rec["product"], rec["seq"], t_ms)
                             for _, rec in items if rec["type"] == "summary")

    def close(self) -> None:
        out = Path(self._out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"sink-{os.getpid()}-{self._worker}.json").write_bytes(
            orjson.dumps({"written": self._written}))


def bench_flow(sink: StampingSink, coinbase_url: str, products: Sequence[str]) -> Dataflow:
    """The production flow, at its default settings, on live Coinbase websockets
    (``exit_on_close``: it ends when the simulator closes) with ``sink`` as its only
    data sink."""
    SINKS["bench"] = lambda options: sink
    cfg = Config(sinks=["bench"], exit_on_close=True)
    cfg.venues["coinbase"] = VenueConfig(list(products), coinbase_url)
    return build_flow(cfg)


def read_stats(out_dir: Path) -> List[Dict[str, Any]]:
    """Every sink partition's statistics written under ``out_dir``."""
    return [orjson.loads(p.read_bytes()) for p in sorted(Path(out_dir).glob("sink-*.json"))]

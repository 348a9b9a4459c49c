"""Small dataflows for the sink and shutdown tests, run for real with
``python -m bytewax.run "tests.sink_flows:build()"``.

A counting source feeds one sink. Settings come from the environment:

* ``SINKTEST_SINK``: ``jsonl`` (default), ``stdout``, ``console`` or ``fail``;
* ``SINKTEST_RECORDS``: records before the source ends (default: until a stop is
  requested, at most 10 million);
* ``SINKTEST_PRODUCTS`` (default 2), ``SINKTEST_RUN`` (records per product in a
  row, default 1) and ``SINKTEST_BATCH`` (records per poll, default 50);
* ``SINKTEST_DIR``, ``SINKTEST_MODE``, ``SINKTEST_MAX_OPEN``: the jsonl sink's;
* ``SINKTEST_FAIL_AT``, ``SINKTEST_FAIL_CODE``: the ``fail`` sink calls
  :func:`sources.runtime.shutdown.fail` once it has seen that many records.

Keys are routing keys (``coinbase:P3-USD#1``), not ``venue:product``, so a sink
that named files from the key would be caught. :class:`FlowRun` runs the flow.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from sinks.console import ConsoleSink
from sinks.jsonl import JsonlSink
from sinks.records import Keyed
from sinks.stdout import StdoutSink
from sources.runtime import shutdown

_MAX_RECORDS = 10_000_000
ROOT = Path(__file__).resolve().parent.parent


def record(i: int, products: int, run: int = 1) -> Keyed:
    """The ``i``-th record of the counting source: a summary-like dict (a status
    every tenth, so the console has lines to show)."""
    product = f"P{(i // run) % products}-USD"
    kind = "status" if i % 10 == 0 else "summary"
    rec = {"type": kind, "venue": "coinbase", "product": product, "ts_recv": 1786309552101.0 + i,
           "n": i, "bid_px": 65083.66, "ask_px": 65083.67, "spread_bps": 0.0015,
           "state": "synced", "reason": "snapshot", "detail": f"record {i}"}
    return f"coinbase:{product}#{i % 3}", rec


class CountingSource(DynamicSource[Keyed]):
    """Records 0, 1, 2, ... on worker 0, ending after ``limit`` or at a stop request."""

    def __init__(self, limit: Optional[int], products: int, run: int, batch: int) -> None:
        self.limit = _MAX_RECORDS if limit is None else limit
        self.products, self.run, self.batch = products, run, batch

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_Counting":
        return _Counting(self if worker_index == 0 else None)


class _Counting(StatelessSourcePartition[Keyed]):
    def __init__(self, source: Optional[CountingSource]) -> None:
        self._source = source
        self._next = 0

    def next_batch(self) -> List[Keyed]:
        src = self._source
        if src is None or shutdown.requested() or self._next >= src.limit:
            raise StopIteration()
        end = min(self._next + src.batch, src.limit)
        out = [record(i, src.products, src.run) for i in range(self._next, end)]
        self._next = end
        return out


class FailingSink(DynamicSink[Keyed]):
    """Calls :func:`shutdown.fail` once it has seen ``at`` records."""

    def __init__(self, at: int, code: int) -> None:
        self.at, self.code = at, code

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_Failing":
        return _Failing(self)


class _Failing(StatelessSinkPartition[Keyed]):
    def __init__(self, sink: FailingSink) -> None:
        self._sink = sink
        self._seen = 0

    def write_batch(self, items: List[Keyed]) -> None:
        before = self._seen
        self._seen += len(items)
        if before < self._sink.at <= self._seen:
            shutdown.fail(f"sinktest: failing at record {self._sink.at} as asked",
                          code=self._sink.code)


def _sink(env: "os._Environ[str]") -> Sink:
    name = env.get("SINKTEST_SINK", "jsonl")
    if name == "jsonl":
        return JsonlSink(env["SINKTEST_DIR"], mode=env.get("SINKTEST_MODE", "append"),
                         max_open=int(env.get("SINKTEST_MAX_OPEN", "64")))
    if name == "stdout":
        return StdoutSink()
    if name == "console":
        return ConsoleSink()
    return FailingSink(int(env.get("SINKTEST_FAIL_AT", "100")),
                       int(env.get("SINKTEST_FAIL_CODE", "1")))


def build() -> Dataflow:
    """The flow, configured from the environment, with lobstream's signal handlers
    and exit-code hook installed as the real flow has them."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = os.environ
    limit = env.get("SINKTEST_RECORDS")
    source = CountingSource(int(limit) if limit else None,
                            products=int(env.get("SINKTEST_PRODUCTS", "2")),
                            run=int(env.get("SINKTEST_RUN", "1")),
                            batch=int(env.get("SINKTEST_BATCH", "50")))
    flow = Dataflow("sinktest")
    op.output("out", op.input("in", flow, source), _sink(env))
    shutdown.install_signal_handlers()
    return flow


class FlowRun:
    """This module's flow in a real ``python -m bytewax.run`` subprocess, with its
    stderr collected line by line so a test can wait for a log line. Use it as a
    context manager: leaving it kills the process group if it still runs (a
    failed assertion must not leave a paused sink behind)."""

    def __init__(self, env: Dict[str, str], preexec_fn: Optional[Callable[[], None]] = None,
                 stdout: Any = subprocess.DEVNULL, argv: Optional[List[str]] = None) -> None:
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "bytewax.run", "tests.sink_flows:build()"],
            cwd=ROOT, env=dict(os.environ, **env), stdout=stdout, stderr=subprocess.PIPE,
            text=True, errors="backslashreplace", preexec_fn=preexec_fn, start_new_session=True)
        self.lines: List[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> "FlowRun":
        return self

    def __exit__(self, *exc: object) -> None:
        self._kill()
        self._reader.join(10)

    def _kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group: sh and its python too
            self.proc.wait(10)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """The first stderr line containing ``text``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {text!r} on stderr:\n{self.stderr[-3000:]}")
                self._changed.wait(min(left, 0.5))

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit (killing the process after ``timeout``); its status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.stderr[-3000:]}")
        self._reader.join(10)
        return code

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

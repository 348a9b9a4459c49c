"""The production flow as users run it: ``python -m bytewax.run dataflows.orderbook:flow``.

Configured only through the documented ``LOBSTREAM_*`` variables: a replay of a
capture (or a directory of them) at full speed (or a Kafka topic), the default
JSON-lines sink (``replace`` mode, into a fresh directory), every other setting at
its default, validation included (it is not optional). With ``processes=2`` the processes form
a Bytewax cluster with ``-i``/``-a``, one worker each.

A run's figures are its CPU time (user + system, summed over its processes) and
its wall time, from launching the processes to their exit. The per-frame cost is
taken between two runs (see :mod:`benchmarks.core`), so interpreter start-up, the
flow's construction and the snapshots cancel. What the
run wrote is read back: the summaries counted (every update must give one), the
last summary's book sizes and top per product, a digest per output file (a
replay's output is a function of the capture, so one and two processes must
write the same bytes), and from each process's end-of-run table the books it
held (placement puts each book in the process that reads its stream).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import orjson

from benchmarks.common import PYTHON, ROOT, child_env, free_port, wait

FLOW = "dataflows.orderbook:flow"
_SUMMARY = b'"type":"summary"'
#: A row of the end-of-run table: ``venue:product  state ...``.
_TABLE_ROW = re.compile(r"^([a-z_]+:\S+)\s+\S+\s+[\d,]+\s")


@dataclass
class FlowRun:
    """What one run took and wrote."""

    wall: float
    #: CPU seconds (user + system) of each process.
    cpus: List[float]
    summaries: int
    #: ``venue_product`` file -> the last summary's ``bid_levels``/``ask_levels``/top.
    books: Dict[str, Dict[str, Any]]
    digests: Dict[str, str]
    #: Per process, the ``venue:product`` books in its end-of-run table.
    books_by_process: List[List[str]]
    #: The JSON-lines directory (removed unless asked to keep it), and the py-spy
    #: samples file when the run was profiled.
    out: Path
    samples: Optional[Path] = None

    @property
    def cpu(self) -> float:
        """CPU seconds of all the processes."""
        return sum(self.cpus)


def run_flow(capture: Optional[str], work: Path, name: str, processes: int = 1,
             spy: Optional[Sequence[str]] = None, timeout: float = 900.0,
             settings: Optional[Mapping[str, str]] = None, keep_output: bool = False,
             args: Sequence[str] = ()) -> FlowRun:
    """Run the flow over ``capture`` with outputs under ``work/name``.

    ``capture`` None: the input is whatever ``settings`` name (a Kafka topic, see
    :mod:`benchmarks.kafka`). ``spy`` is a py-spy command prefix (``[py-spy, record,
    ...]``, see :mod:`benchmarks.profiling`); the samples go to
    ``work/name/samples.txt``. ``settings`` are further ``LOBSTREAM_*`` variables,
    ``args`` further ``bytewax.run`` flags (recovery). The JSON-lines files (35 MB
    for the long Coinbase capture) are deleted once read, unless ``keep_output``.
    """
    base = work / name
    out = base / "jsonl"
    base.mkdir(parents=True, exist_ok=True)
    env = child_env(LOBSTREAM_JSONL_DIR=str(out), LOBSTREAM_JSONL_MODE="replace",
                    **({"LOBSTREAM_REPLAY": capture} if capture is not None else {}),
                    **(settings or {}))
    cmd = [PYTHON, "-m", "bytewax.run", FLOW, *args]
    samples = base / "samples.txt" if spy else None
    if spy:
        if processes != 1:
            raise ValueError("only a one-process run is profiled")
        cmd = [*spy, "-o", str(samples), "--", *cmd]
    ports = [free_port() for _ in range(processes)]
    addresses = ";".join(f"127.0.0.1:{port}" for port in ports)
    procs = []
    logs = []
    t0 = time.perf_counter()
    try:
        for i in range(processes):
            log = base / f"process{i}.log"
            logs.append(str(log))
            argv = cmd + (["-i", str(i), "-a", addresses] if processes > 1 else [])
            with open(log, "wb") as f:
                procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=f,
                                              stderr=subprocess.STDOUT))
            if i + 1 < processes:
                _await_listening(ports[i], procs[-1], timeout)
        waited = [wait(p, timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    wall = time.perf_counter() - t0
    for i, (code, _) in enumerate(waited):
        if code != 0:
            raise RuntimeError(f"{name}: process {i} exited {code}:\n"
                               f"{Path(logs[i]).read_text(errors='replace')[-3000:]}")
    summaries = 0
    books: Dict[str, Dict[str, Any]] = {}
    digests: Dict[str, str] = {}
    for path in sorted(out.glob("*.jsonl")):
        data = path.read_bytes()
        summaries += data.count(_SUMMARY)
        digests[path.name] = hashlib.sha256(data).hexdigest()
        last = data.rfind(_SUMMARY)
        if last >= 0:
            start = data.rfind(b"\n", 0, last) + 1
            rec = orjson.loads(data[start:data.index(b"\n", last)])
            books[path.stem] = {"bids": rec["bid_levels"], "asks": rec["ask_levels"],
                                "top": [rec["bid_px"], rec["bid_sz"], rec["ask_px"],
                                        rec["ask_sz"], rec["mid"], rec["spread"]]}
    if not keep_output:
        shutil.rmtree(out, ignore_errors=True)
    return FlowRun(wall, [cpu for _, cpu in waited], summaries, books, digests,
                   [_table_books(Path(log)) for log in logs], out, samples)


def _table_books(log: Path) -> List[str]:
    """The books listed in a process's end-of-run table."""
    rows = []
    in_table = False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("product ") and " state " in line:
            in_table = True
        elif in_table:
            m = _TABLE_ROW.match(line)
            if m is None:
                in_table = False
            else:
                rows.append(m.group(1))
    return sorted(rows)


def _await_listening(port: int, proc: subprocess.Popen, timeout: float) -> None:
    """Wait until ``proc`` listens on ``port`` (read from ``/proc/net/tcp``, without
    connecting, which would disturb the cluster's handshake).

    Bytewax processes connect to the lower-numbered ones and retry a refused
    connection after a second; launched together, whether that retry happens
    varies from run to run, which would put up to a second of noise into the
    difference of two runs. Launched one after the other, they never retry."""
    needle = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                return  # no way to tell here: let the processes retry
            # local_address is the 2nd field, the state (0A: LISTEN) the 4th.
            if any(needle in f"{f[1]} " and f[3] == "0A" for f in map(str.split, lines)):
                return
        time.sleep(0.01)

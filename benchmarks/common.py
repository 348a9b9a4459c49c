"""What every benchmark row shares: child processes, medians, the machine's state.

The machine is shared and noisy, so rows compare numbers measured side by side:
every compared program runs in a fresh child process (none inherits the parent's
heap, whose size would change what garbage collection costs it), the compared
runs alternate, each figure is a median of repeats, and per-frame costs are CPU
time (user + system), which other people's processes disturb far less than wall
time: at a load average of 3 to 4 on 2 cores, the same flow run took 7.7 and
10.5 s of wall time but 5.1 and 6.0 s of CPU.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import orjson

ROOT = Path(__file__).resolve().parent.parent
#: The interpreter of lobstream's environment (the one running the benchmark).
PYTHON = sys.executable


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> Dict[str, str]:
    """The environment of a child: this checkout importable, no ``LOBSTREAM_*``
    setting of the user's leaking into the flows the benchmark configures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOBSTREAM_", "LOBBENCH_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def wait(proc: subprocess.Popen, timeout: float) -> Tuple[int, float]:
    """Wait for ``proc``; its exit code and the CPU seconds (user + system) it and
    the children it waited for used. Killed after ``timeout`` s.

    CPU time is what the benchmark compares: on a shared machine a process's wall
    time also counts the time other people's processes held the cores."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise TimeoutError(f"{' '.join(map(str, proc.args))} did not finish in "
                               f"{timeout:.0f} s")
        time.sleep(0.005)


def terminate(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM ``proc`` and reap it, SIGKILL if it is still there after ``grace`` s."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_module(module: str, args: Sequence[str], out: Path, log: Path, timeout: float,
               python: str = PYTHON, env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Run ``python -m module args --out out`` from the checkout; return the JSON it
    wrote to ``out``. A failure raises with the end of its log."""
    with open(log, "wb") as f:
        proc = subprocess.Popen([python, "-m", module, *args, "--out", str(out)], cwd=ROOT,
                                env=dict(env or child_env()), stdout=f, stderr=subprocess.STDOUT)
        code, _ = wait(proc, timeout)
    if code != 0:
        raise RuntimeError(f"{module} failed ({code}):\n{log.read_text(errors='replace')[-3000:]}")
    return orjson.loads(out.read_bytes())


@contextmanager
def simulator(args: Sequence[str], log: Path) -> Iterator[Tuple[str, subprocess.Popen]]:
    """``python -m sources.simulator --port 0 args`` in its own process, stderr to
    ``log``; yields its base URL (``ws://127.0.0.1:PORT``) and the process, and
    stops it on the way out."""
    with open(log, "wb") as err:
        sim = subprocess.Popen([PYTHON, "-m", "sources.simulator", "--port", "0", *args],
                               cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=err)
        try:
            assert sim.stdout is not None
            line = sim.stdout.readline().decode()
            if "listening on" not in line:
                raise RuntimeError(f"simulator did not start: {line!r}")
            yield line.strip().rsplit(" ", 1)[-1], sim
        finally:
            terminate(sim, 10)


def loadavg() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {}
    for name in ("bytewax", "msgspec", "orjson", "sortedcontainers", "websockets", "py-spy"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    git: Dict[str, Any] = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout
        git["dirty_files"] = len(status.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "packages": packages, "git": git,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
    }


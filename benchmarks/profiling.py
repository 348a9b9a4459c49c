"""Where the full flow's time per frame goes: py-spy samples sorted into steps.

py-spy samples the flow process from outside (``--nonblocking``: the process is
never paused), so the run profiled is the one users run, at nearly its normal
speed; pyinstrument, an in-process profiler, made the same run five times slower,
which would distort the shares. Only the main thread counts (the worker runs
there; the status thread sleeps). Each sample goes to the step of the innermost
lobstream frame on its stack, by file (:data:`STEPS`): time in a library called
from a step (msgspec from the parser, sortedcontainers from the book, orjson from
the sink) counts as that step's, and so does the garbage collection its
allocations trigger. A sample with no lobstream frame is Bytewax's (its operators,
the Rust runtime between callbacks); the flow's filter lambdas count there too, as
they are the operators' glue.

The run profiled is the long one of :mod:`benchmarks.core`; its start-up and exit
(imports, building the flow, the end-of-run table) are left out, and the rest is
shared among the steps. The two snapshots it also holds take under 1 % of it;
the scan of the capture at start-up grows with the capture, like the frames, so it
is a step of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

#: Samples per second. py-spy reads the process's memory at this rate from its own
#: process; at 500 Hz the run profiled measured within noise of an unprofiled one.
RATE = 500

#: (step, file prefixes of the frames that belong to it); first match wins.
STEPS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("replay: read capture", ("sources/capture/", "sources/transport/replay.py")),
    ("parse", ("sources/venues/",)),
    ("feed checks", ("sources/feed/", "state/sync.py")),
    ("book apply", ("state/book.py",)),
    ("top window", ("state/top.py",)),
    ("summarize", ("state/metrics.py",)),
    ("book step (state, bars, records)", ("state/", "dataflows/orderbook.py")),
    ("sink (encode + write)", ("sinks/",)),
)
BYTEWAX = "Bytewax (operators, runtime)"
STARTUP_SCAN = "replay: start-up scan"
STARTUP = "start-up and exit"
ORDER = [s for s, _ in STEPS] + [STARTUP_SCAN, BYTEWAX]
_GLUE = "build_flow.<locals>.<lambda>"


def spy_command() -> Tuple[Optional[List[str]], str]:
    """The py-spy command prefix, or None and why it cannot be used here."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        return None, "py-spy is not installed (pip install py-spy)"
    probe = subprocess.run([exe, "record", "-r", "10", "-f", "raw", "-o", "/dev/null", "--",
                            sys.executable, "-c", "pass"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        return None, f"py-spy cannot sample here: {probe.stderr.strip()[-200:]}"
    return [exe, "record", "--nonblocking", "--threads", "-r", str(RATE), "-f", "raw"], ""


def step_of(frames: List[str]) -> str:
    """The step a stack (outermost frame first) belongs to."""
    if any(f.startswith("_locate_dataflow ") or "<frozen importlib" in f for f in frames):
        return STARTUP_SCAN if any(f.startswith("list_streams ") for f in frames) else STARTUP
    for frame in reversed(frames):
        if frame.startswith(_GLUE):
            return BYTEWAX
        where = frame[frame.rfind("(") + 1:]
        for step, prefixes in STEPS:
            if where.startswith(prefixes):
                return step
        if where.startswith("dataflows/"):
            return STARTUP  # the session: banner, status line, end-of-run table
    return BYTEWAX


def step_samples(path: Path) -> Dict[str, int]:
    """Main-thread samples per step in a py-spy ``raw`` (collapsed stacks) file."""
    counts: Dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not n.isdigit() or not any(f.startswith("_run_module_as_main ") for f in frames):
            continue
        step = step_of(frames)
        counts[step] = counts.get(step, 0) + int(n)
    return counts


def step_shares(path: Path) -> Tuple[Dict[str, float], int]:
    """Each step's share of the run's samples, start-up and exit left out, and the
    number of samples shared."""
    counts = step_samples(path)
    counts.pop(STARTUP, None)
    total = sum(counts.values())
    return {step: counts.get(step, 0) / total if total else 0.0 for step in ORDER}, total

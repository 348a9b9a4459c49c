"""Idle CPU: what the flow costs while its feed is quiet.

The simulator paces the bundled Coinbase recording at 1/1000 of its speed (a frame
a minute or so once the snapshots are in), so the flow is up, subscribed and
holding its books and bars (the default 1-minute interval) with nearly nothing
to do. After a warm-up (connections, the 46,000-level snapshot) the flow's CPU
seconds are read from ``/proc/PID/stat`` over a sampling window; the figure is
that CPU time as a share of one core. It shows that nothing busy-loops while
event time stands still (Bytewax's windowing does, issue #578; lobstream's bars
live in its own state), and what Bytewax's polling of an empty source costs.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict

from benchmarks.common import PYTHON, ROOT, child_env, simulator, terminate
from benchmarks.flowrun import FLOW

CAPTURE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"
#: Clock ticks per second of /proc's utime and stime.
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def measure(work: Path, warmup: float, window: float) -> Dict[str, Any]:
    """The flow's CPU share of one core over ``window`` s after ``warmup`` s."""
    work.mkdir(parents=True, exist_ok=True)
    with simulator(["--capture", str(CAPTURE), "--speed", "0.001"],
                   work / "simulator.log") as (url, sim):
        env = child_env(LOBSTREAM_VENUES="coinbase", LOBSTREAM_COINBASE_URL=f"{url}/coinbase",
                        LOBSTREAM_JSONL_DIR=str(work / "jsonl"), LOBSTREAM_STATUS_INTERVAL="0")
        with open(work / "flow.log", "wb") as log:
            flow = subprocess.Popen([PYTHON, "-m", "bytewax.run", FLOW], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(warmup)
            if flow.poll() is not None:
                raise RuntimeError(f"the flow ended during the warm-up ({flow.returncode}):\n"
                                   f"{(work / 'flow.log').read_text(errors='replace')[-2000:]}")
            flow0, sim0, t0 = cpu_seconds(flow.pid), cpu_seconds(sim.pid), time.monotonic()
            time.sleep(window)
            flow1, sim1, t1 = cpu_seconds(flow.pid), cpu_seconds(sim.pid), time.monotonic()
        finally:
            terminate(flow, 20)
    elapsed = t1 - t0
    return {"core_share": (flow1 - flow0) / elapsed, "flow_cpu_s": flow1 - flow0,
            "simulator_cpu_s": sim1 - sim0, "window_s": elapsed, "warmup_s": warmup}

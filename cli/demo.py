"""``lobstream demo``: the whole pipeline offline, on the bundled real recordings.

Starts the local exchange simulator on a free loopback port with the Coinbase
Advanced Trade (BTC-USD with a 46,000-level book, ETH-USD) and Deribit (10
options) recordings, then runs the flow against it exactly as against the
exchanges (``examples/offline.toml``, websocket and REST URLs pointed at the
simulator). It ends by itself when the recordings do. At the recorded pace
(``--speed 1``, about two minutes) a progress line on stderr says how far the
recording has got.

The simulator runs as a child process (its own interpreter, so it never competes
with the flow for the GIL) and is always stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, List, Optional

from cli.common import ROOT, Command, UsageError, add_settings, fail
from cli.flow import EPILOG, run_flow
from dataflows import launch as launching
from sources.capture.format import read_capture

RECORDINGS = ("recordings/coinbase_advanced_btc_eth.jsonl.gz", "recordings/deribit_options.jsonl.gz")
CONFIG = "examples/offline.toml"
#: How long the simulator may take to load the recordings and listen.
START_TIMEOUT_S = 60.0
PROGRESS_EVERY_S = 10.0


def recording_seconds(paths: List[Path]) -> float:
    """How long the simulator takes to serve the recordings at speed 1: it starts
    every venue's recording when it starts, so the longest one."""
    longest = 0.0
    for path in paths:
        first = last = None
        for frame in read_capture(path, validate=False):
            first = frame.ts if first is None else first
            last = frame.ts
        if first is not None and last is not None:
            longest = max(longest, (last - first) / 1000.0)
    return longest


class Simulator:
    """The simulator as a child process; its URL from the line it prints once listening."""

    def __init__(self, captures: List[Path], speed: float) -> None:
        args = [sys.executable, "-m", "sources.simulator", "--port", "0", "--speed", f"{speed:g}"]
        for c in captures:
            args += ["--capture", str(c)]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def url(self) -> str:
        """The websocket base URL, once the simulator listens; RuntimeError if it does not."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith("lobstream simulator listening on "):
                return line.split()[-1]
        self.stop()
        err = self.proc.stderr.read().strip() if self.proc.stderr else ""
        raise RuntimeError(err.splitlines()[-1] if err else "the simulator did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _progress(seconds: float, speed: float, done: threading.Event) -> None:
    """A line on stderr every few seconds while a paced demo runs."""
    total = seconds / speed
    started = time.monotonic()
    while not done.wait(PROGRESS_EVERY_S):
        elapsed = time.monotonic() - started
        pct = min(100.0, 100.0 * elapsed / total) if total > 0 else 100.0
        sys.stderr.write(f"demo: {_clock(elapsed)} of about {_clock(total)} "
                         f"({pct:.0f} % of the recordings at {speed:g}x)\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speed", type=float, default=float(os.environ.get(
        "LOBSTREAM_DEMO_SPEED", 0)), help="0 = as fast as the flow reads (a few seconds; "
        "default, or $LOBSTREAM_DEMO_SPEED); 1 = the recorded pace (about 2 minutes)")
    add_settings(parser)
    launching.add_arguments(parser, os.environ)


def _execute(args: argparse.Namespace) -> int:
    captures = [ROOT / r for r in RECORDINGS]
    missing = [str(c) for c in captures if not c.is_file()]
    if missing or not (ROOT / CONFIG).is_file():
        return fail("lobstream demo", f"{(missing or [CONFIG])[0]} not found: the demo runs "
                    "from a checkout of the lobstream repository")
    if args.speed < 0:
        return fail("lobstream demo", f"--speed={args.speed:g}: must be 0 or more")
    out = Path(args.out or "out/offline")
    sim = Simulator(captures, args.speed)
    done = threading.Event()
    try:
        try:
            url = sim.url()
        except RuntimeError as ex:
            return fail("lobstream demo", f"simulator: {ex}", 1)
        http = "http" + url[len("ws"):]
        sys.stderr.write(f"demo: simulator at {url}, serving {len(captures)} recordings at "
                         + ("full speed" if args.speed == 0 else f"{args.speed:g}x the recorded "
                            "pace") + "\n")
        if args.speed > 0:
            threading.Thread(target=_progress, args=(recording_seconds(captures), args.speed, done),
                             daemon=True).start()
        for old in out.glob("*.jsonl") if out.is_dir() else ():
            old.unlink()  # each demo shows its own run, not an append to the last one
        status = run_flow("lobstream demo", str(ROOT / CONFIG), args, {
            "LOBSTREAM_JSONL_DIR": str(out),
            "LOBSTREAM_COINBASE_URL": f"{url}/coinbase", "LOBSTREAM_DERIBIT_URL": f"{url}/deribit",
            "LOBSTREAM_COINBASE_REST_URL": f"{http}/coinbase",
            "LOBSTREAM_DERIBIT_REST_URL": f"{http}/deribit"})
    except UsageError as ex:
        return fail("lobstream demo", str(ex))
    finally:
        done.set()
        sim.stop()
    files = sorted(out.glob("*.jsonl"))
    if files:
        sys.stderr.write(f"demo: records written to {out}/:\n" + "".join(
            f"  {f.name:<40} {_lines(f):>6,} lines\n" for f in files))
    return status


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


COMMANDS = [
    Command("demo", "run everything offline: the simulator serving the bundled recordings",
            "Run the whole pipeline offline: the local exchange simulator serves the bundled "
            "real recordings (Coinbase BTC-USD with a 46,000-level book and ETH-USD, 10 Deribit "
            "options) over real websockets, and the flow follows them as it would the "
            "exchanges. Records go to out/offline/ (--out); it ends when the recordings do.",
            _configure, _execute, epilog=EPILOG),
]

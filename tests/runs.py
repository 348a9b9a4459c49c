"""Helpers for tests that run the ``lobstream`` command as a user would: in a child
process, with bounded waits, on loopback ports that are free."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
COINBASE = RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT = RECORDINGS / "deribit_options.jsonl.gz"
BINANCE = RECORDINGS / "binance_spot_btcusdt.jsonl.gz"
DERIBIT_OPTIONS = ("BTC-25MAR22-400000-C", "BTC-30APR21-20000-C", "BTC-31DEC21-300000-P",
                   "ETH-16APR21-1400-P", "ETH-16APR21-1600-C", "ETH-23APR21-2000-C",
                   "ETH-24SEP21-320-P", "ETH-30APR21-2240-P", "ETH-6APR21-2400-P",
                   "ETH-9APR21-1950-C")


def clean_env(**extra: str) -> Dict[str, str]:
    """This process's environment without any LOBSTREAM_*/BYTEWAX_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOBSTREAM_", "BYTEWAX_"))}
    env.update(extra)
    return env


def command(*args: str) -> List[str]:
    return [sys.executable, "-m", "cli.main", *map(str, args)]


def lobstream(*args: str, env: Optional[Dict[str, str]] = None,
              timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``lobstream ARGS`` to its end (text output)."""
    return subprocess.run(command(*args), cwd=ROOT, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def spawn(*args: str, env: Optional[Dict[str, str]] = None, err: Optional[Path] = None
          ) -> subprocess.Popen:
    """Start ``lobstream ARGS``; stderr to ``err`` (a file, so it never fills a pipe)."""
    return subprocess.Popen(command(*args), cwd=ROOT, env=env or clean_env(),
                            stdout=subprocess.DEVNULL,
                            stderr=open(err, "wb") if err else subprocess.DEVNULL)


def wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def free_ports(n: int, consecutive: bool = False) -> List[int]:
    """``n`` loopback ports free now (``consecutive``: PORT, PORT+1, ...)."""
    for _ in range(200):
        socks = []
        try:
            first = socket.socket()
            first.bind(("127.0.0.1", 0))
            socks.append(first)
            base = first.getsockname()[1]
            for i in range(1, n):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i if consecutive else 0))
                socks.append(s)
            return [s.getsockname()[1] for s in socks]
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free ports")


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """The exit status, killing the process if it does not end within ``timeout``."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"{proc.args} did not end within {timeout:g} s") from None

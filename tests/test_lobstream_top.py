"""``lobstream top`` under a pseudo-terminal, as a user sees it, against a 2-process run.

The run is a paced replay of the Coinbase and Deribit recordings split over two
processes (one recorded connection each), each serving its metrics on its own
port (``--metrics`` base port + process id). ``top`` reads both and must show every
product of both processes with its state and prices; ``q`` quits it, and Ctrl-C in
process 0 then ends the whole run.
"""

from __future__ import annotations

import signal
import sys

import pexpect

from tests.runs import (COINBASE, DERIBIT, DERIBIT_OPTIONS, ROOT, clean_env, free_ports, spawn,
                        stop, text, wait_for)

PRODUCTS = ["coinbase:BTC-USD", "coinbase:ETH-USD"] + [f"deribit:{p}" for p in DERIBIT_OPTIONS]


def test_top_shows_every_product_of_both_processes(tmp_path):
    metrics = free_ports(2, consecutive=True)[0]
    cluster = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    errs = [tmp_path / f"err{i}.txt" for i in range(2)]
    procs = [spawn("replay", COINBASE, DERIBIT, "--speed", "1", "--out", tmp_path / "out",
                   "--status", "0", "--metrics", f"127.0.0.1:{metrics}", "-i", str(i),
                   "-a", cluster, err=errs[i]) for i in range(2)]
    top = None
    try:
        for i, e in enumerate(errs):
            wait_for(lambda e=e: "status line" in text(e), 60, f"process {i}'s banner")
        assert f"http://127.0.0.1:{metrics + 1}/metrics" in text(errs[1])
        top = pexpect.spawn(sys.executable, ["-m", "cli.main", "top", f"127.0.0.1:{metrics}",
                                             "--processes", "2", "--interval", "0.5"],
                            cwd=str(ROOT), env=clean_env(TERM="xterm", COLUMNS="200",
                                                         LINES="60"),
                            dimensions=(60, 200), encoding="utf-8", timeout=60)
        def btc(frame: str) -> str:
            return ([line for line in frame.splitlines() if "coinbase:BTC-USD" in line]
                    or [""])[-1]

        seen = ""
        # The table redraws in place; read frames until one shows every product, with the
        # 46,000-level BTC-USD book synced (its snapshot takes a moment), or time out.
        for _ in range(200):
            top.expect("q or Ctrl-C quits", timeout=60)
            seen = top.before
            if all(p in seen for p in PRODUCTS) and "synced" in btc(seen):
                break
        assert all(p in seen for p in PRODUCTS), seen
        assert "from 2/2 processes" in seen
        assert "synced" in btc(seen) and "65,0" in btc(seen), btc(seen)  # a real BTC-USD bid
        top.send("q")
        top.expect(pexpect.EOF, timeout=30)
        top.close()
        assert top.exitstatus == 0
        procs[0].send_signal(signal.SIGINT)
        assert [stop(p, 60) for p in procs] == [0, 0], [text(e)[-2000:] for e in errs]
    finally:
        if top is not None and top.isalive():
            top.terminate(force=True)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

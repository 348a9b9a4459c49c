"""Authenticated feeds end to end: the real dataflow against the simulator, which checks
the credentials for real (tests/test_simulator_auth.py).

* Deribit ``raw`` with credentials: every token is refreshed before it expires (2 s
  lifetimes), on one connection, and the books equal the replay of the recording.
* A wrong Deribit secret, and a Coinbase Exchange signature outside the server's
  30 s window: every product refused, one log line saying what to fix, one
  connection (no reconnect storm), and the run ends by itself.
* Coinbase Exchange ``level2`` with a valid signature equals the replay.
* A whole authenticated run in its own process, logging at DEBUG, recording and
  serving metrics: no piece of any secret, token or signature appears in any log
  line, capture file, metrics page or output file, and the redacted captures
  replay to the same books.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import socket
from secrets import token_bytes, token_hex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest
from bytewax.testing import run_main

from dataflows.config import Config, VenueConfig
from dataflows.orderbook import build_flow
from sources.simulator import Fault, FaultPlan, Recording, SimulatorThread, load_recording
from sources.venues.credentials import REDACTED, Credentials
from tests.helpers import comparable, read_dir

ROOT = Path(__file__).resolve().parent.parent
DERIBIT_CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"
CX_CAPTURE = ROOT / "recordings" / "coinbase_exchange_level2.jsonl.gz"
DERIBIT_PRODUCTS = [
    "BTC-25MAR22-400000-C", "BTC-30APR21-20000-C", "BTC-31DEC21-300000-P",
    "ETH-16APR21-1400-P", "ETH-16APR21-1600-C", "ETH-23APR21-2000-C",
    "ETH-24SEP21-320-P", "ETH-30APR21-2240-P", "ETH-6APR21-2400-P", "ETH-9APR21-1950-C",
]
CX_PRODUCTS = ["BAND-BTC", "BAND-GBP", "CRV-EUR", "DASH-BTC", "NMR-EUR", "NU-GBP", "SKL-BTC",
               "SKL-GBP", "SKL-USD", "YFI-BTC"]
#: Random, so that a fragment of one cannot be found anywhere by chance.
DERIBIT_KEY = (token_hex(8), token_hex(16))
CX_KEY = (token_hex(16), base64.b64encode(token_bytes(32)).decode(), token_hex(12))
API_KEYS = {"deribit": [DERIBIT_KEY], "coinbase_exchange": [CX_KEY]}
DERIBIT = Credentials("deribit", dict(zip(("client_id", "client_secret"), DERIBIT_KEY)), "test")
CX = Credentials("coinbase_exchange", dict(zip(("key", "secret", "passphrase"), CX_KEY)), "test")
#: With the simulator's clock as recorded, a live run's books differ from a replay's
#: only in receive times.
LIVE_ONLY = ("ts_recv",)
#: The simulator sends the 195 book frames of these instruments in about 8 s, so a
#: 4 s token is refreshed (after 2 s, at the feed's next 1 s tick: see
#: deribit.REFRESH_LEAD_MS) at least twice.
RATE, LIFETIME = 25, 4.0
#: No trade or ticker channels: the simulator serves books only.
BOOKS_ONLY = {"trades": False, "tickers": False}


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording([DERIBIT_CAPTURE, CX_CAPTURE])


def replay(capture: Path, out: Path) -> Dict[str, List[dict]]:
    run_main(build_flow(Config(replay=[str(capture)], jsonl_dir=str(out))))
    return read_dir(out)


def live_config(sim: SimulatorThread, venue: str, products: List[str], settings: Dict[str, str],
                credentials: Credentials, tmp_path: Path) -> Config:
    """A run of ``venue`` (books only) against the simulator, output in ``tmp_path/live``."""
    path = "/" + venue.replace("_", "-")
    return Config(venues={venue: VenueConfig(products, sim.url + path, {**settings, **BOOKS_ONLY},
                                             credentials=credentials)},
                  exit_on_close=True, jsonl_dir=str(tmp_path / "live"))


def records(files: Dict[str, List[dict]], kind: str) -> List[dict]:
    return [r for recs in files.values() for r in recs if r["type"] == kind]


def books(files: Dict[str, List[dict]]) -> Dict[str, List[dict]]:
    """Each file's book records (summaries and statuses) without receive times: the
    recordings also hold trades and tickers, which these live runs do not follow."""
    kept = {name: [r for r in recs if r["type"] in ("summary", "status")]
            for name, recs in files.items()}
    return comparable(kept, LIVE_ONLY)


@pytest.mark.timeout(90)
def test_deribit_raw_refreshes_its_tokens_without_a_gap(recording, tmp_path):
    with SimulatorThread(recording, rate=RATE, retime="none", api_keys=API_KEYS,
                         token_lifetime=LIFETIME) as sim:
        cfg = live_config(sim, "deribit", DERIBIT_PRODUCTS, {"interval": "raw"}, DERIBIT,
                          tmp_path)
        run_main(build_flow(cfg))
        stats = sim.stats["deribit"]
    assert (stats.accepted_connections, stats.authentications, stats.expired) == (1, 1, 0)
    assert stats.refreshes >= 2 and stats.auth_failures == 0
    live = read_dir(tmp_path / "live")
    assert len(live) == 10
    assert [s for s in records(live, "status") if s["state"] == "invalid"] == []
    assert books(live) == books(replay(DERIBIT_CAPTURE, tmp_path / "replay"))


@pytest.mark.timeout(90)
def test_deribit_authenticates_again_on_reconnect(recording, tmp_path):
    plan = FaultPlan([Fault.parse("close:venue=deribit,connection=0,after=40,code=1011")])
    with SimulatorThread(recording, rate=100, api_keys=API_KEYS, faults=plan) as sim:
        cfg = live_config(sim, "deribit", DERIBIT_PRODUCTS, {"interval": "raw"}, DERIBIT,
                          tmp_path)
        run_main(build_flow(cfg))
        stats = sim.stats["deribit"]
    assert (stats.accepted_connections, stats.authentications, stats.auth_failures) == (2, 2, 0)
    statuses = records(read_dir(tmp_path / "live"), "status")
    # Every book was synced, lost with the connection, and synced again on the new one.
    for product in DERIBIT_PRODUCTS:
        mine = [(s["state"], s["reason"]) for s in statuses if s["product"] == product]
        assert mine[-1][0] == "synced" and ("invalid", "disconnected") in mine


def feed_errors(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "lobstream.feed" and r.levelno >= logging.ERROR]


@pytest.mark.timeout(60)
def test_wrong_deribit_secret_refuses_once_and_ends(recording, tmp_path, caplog):
    wrong = Credentials("deribit", {"client_id": DERIBIT_KEY[0], "client_secret": "not it"}, "test")
    with SimulatorThread(recording, rate=100, api_keys=API_KEYS) as sim:
        cfg = live_config(sim, "deribit", DERIBIT_PRODUCTS, {"interval": "raw"}, wrong,
                          tmp_path)
        with caplog.at_level(logging.INFO):
            run_main(build_flow(cfg))  # ends by itself: every product was refused
        stats = sim.stats["deribit"]
    assert (stats.accepted_connections, stats.auth_failures, stats.subscribe_requests) == (1, 1, 0)
    statuses = records(read_dir(tmp_path / "live"), "status")
    assert sorted(s["product"] for s in statuses) == DERIBIT_PRODUCTS
    assert {(s["reason"], s["detail"]) for s in statuses} == {
        ("refused", "13004 invalid_credentials")}
    line, = feed_errors(caplog)
    assert "13004 invalid_credentials" in line and "LOBSTREAM_DERIBIT_CLIENT_SECRET" in line
    assert "not it" not in caplog.text


@pytest.mark.timeout(90)
def test_coinbase_exchange_level2_matches_the_replay(recording, tmp_path):
    with SimulatorThread(recording, speed=0, retime="none", api_keys=API_KEYS) as sim:
        cfg = live_config(sim, "coinbase_exchange", CX_PRODUCTS, {"channel": "level2"}, CX,
                          tmp_path)
        run_main(build_flow(cfg))
        stats = sim.stats["coinbase_exchange"]
    assert (stats.authentications, stats.auth_failures) == (1, 0)
    live = read_dir(tmp_path / "live")
    assert len(live) == 10
    assert books(live) == books(replay(CX_CAPTURE, tmp_path / "replay"))


@pytest.mark.timeout(60)
def test_clock_skew_beyond_the_signature_window(recording, tmp_path, caplog):
    with SimulatorThread(recording, speed=0, api_keys=API_KEYS, clock_skew=45.0) as sim:
        cfg = live_config(sim, "coinbase_exchange", CX_PRODUCTS[:3], {"channel": "level2"}, CX,
                          tmp_path)
        with caplog.at_level(logging.INFO):
            run_main(build_flow(cfg))
        stats = sim.stats["coinbase_exchange"]
    assert (stats.accepted_connections, stats.auth_failures) == (1, 1)
    statuses = records(read_dir(tmp_path / "live"), "status")
    assert sorted(s["product"] for s in statuses) == CX_PRODUCTS[:3]
    assert {s["reason"] for s in statuses} == {"refused"}
    line, = feed_errors(caplog)
    assert "request timestamp expired" in line and "NTP" in line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Any piece of a secret this long counts as a leak (a log line may show a part:
#: websockets' DEBUG frame dump shows a payload's start and end).
FRAGMENT = 10
#: The flow as ``python -m bytewax.run`` runs it, with every logger at DEBUG (the
#: flow's own basicConfig then changes nothing).
DEBUG_RUN = ("import logging, runpy, sys; logging.basicConfig(level=logging.DEBUG, "
             "format='%(levelname)s %(name)s: %(message)s'); "
             "sys.argv = ['bytewax.run', 'dataflows.orderbook:flow']; "
             "runpy.run_module('bytewax.run', run_name='__main__', alter_sys=True)")


@pytest.mark.timeout(120)
def test_no_secret_in_any_log_capture_or_metrics_page(recording, tmp_path):
    creds_file = tmp_path / "deribit.toml"
    creds_file.write_text(f'client_id = "{DERIBIT_KEY[0]}"\nclient_secret = "{DERIBIT_KEY[1]}"\n')
    creds_file.chmod(0o600)
    port = free_port()
    with SimulatorThread(recording, rate=RATE, api_keys=API_KEYS, token_lifetime=LIFETIME) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOBSTREAM_")}
        env.update(
            LOBSTREAM_VENUES="deribit,coinbase_exchange", LOBSTREAM_EXIT_ON_CLOSE="1",
            LOBSTREAM_JSONL_DIR=str(tmp_path / "out"), LOBSTREAM_RECORD_DIR=str(tmp_path / "rec"),
            LOBSTREAM_METRICS_ADDR=f"127.0.0.1:{port}", LOBSTREAM_STATUS_INTERVAL="1",
            LOBSTREAM_DERIBIT_PRODUCTS=",".join(DERIBIT_PRODUCTS),
            LOBSTREAM_DERIBIT_URL=sim.url + "/deribit", LOBSTREAM_DERIBIT_INTERVAL="raw",
            LOBSTREAM_DERIBIT_TRADES="0", LOBSTREAM_DERIBIT_TICKERS="0",
            LOBSTREAM_DERIBIT_INSTRUMENTS="off", LOBSTREAM_DERIBIT_CREDENTIALS_FILE=str(creds_file),
            LOBSTREAM_COINBASE_EXCHANGE_PRODUCTS="NU-GBP",
            LOBSTREAM_COINBASE_EXCHANGE_URL=sim.url + "/coinbase-exchange",
            LOBSTREAM_COINBASE_EXCHANGE_CHANNEL="level2", LOBSTREAM_COINBASE_EXCHANGE_TRADES="0",
            LOBSTREAM_COINBASE_EXCHANGE_INSTRUMENTS="off",
            LOBSTREAM_COINBASE_EXCHANGE_KEY=CX_KEY[0], LOBSTREAM_COINBASE_EXCHANGE_SECRET=CX_KEY[1],
            LOBSTREAM_COINBASE_EXCHANGE_PASSPHRASE=CX_KEY[2])
        proc = subprocess.Popen([sys.executable, "-c", DEBUG_RUN], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        pages = []
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    pages.append(r.read().decode())
            except OSError:
                pass  # not up yet, or already gone
            time.sleep(0.2)
        log, _ = proc.communicate(timeout=30)
        seen = sim.credentials_seen()
        deribit, cx = sim.stats["deribit"], sim.stats["coinbase_exchange"]
    text = log.decode()
    assert proc.returncode == 0, text[-3000:]
    # The run did what is being checked: DEBUG logging, authentication, refreshes,
    # books, recording and metrics.
    assert "DEBUG asyncio: Using selector" in text
    assert deribit.authentications == 1 and deribit.refreshes >= 2 and cx.authentications == 1
    assert len(seen) >= 2 * (1 + deribit.refreshes) + 1
    assert len(read_dir(tmp_path / "out")) == 11
    assert any('lobstream_feed_events_total{event="auth_grants"' in p for p in pages)
    captures = {p.name: gzip.decompress(p.read_bytes()).decode()
                for p in (tmp_path / "rec").iterdir()}
    assert len(captures) == 2
    recorded = "\n".join(captures.values())
    for key in ("client_id", "client_secret", "access_token", "refresh_token", "signature",
                "key", "passphrase"):
        assert f'"{key}":"{REDACTED}"' in recorded
    # The redacted captures still replay to the same books.
    assert books(replay(tmp_path / "rec", tmp_path / "replayed")) == books(
        read_dir(tmp_path / "out"))
    outputs = "\n".join(p.read_text() for p in (tmp_path / "out").iterdir())
    secrets = [*DERIBIT_KEY, *CX_KEY, *seen]
    for where, body in [("log", text), ("captures", recorded), ("metrics", "\n".join(pages)),
                        ("outputs", outputs)]:
        leaked = [s for s in secrets if any(s[i:i + FRAGMENT] in body
                                            for i in range(len(s) - FRAGMENT + 1))]
        assert not leaked, f"{where} holds a part of {len(leaked)} secrets"

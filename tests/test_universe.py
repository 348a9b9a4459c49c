"""A real product universe against the simulator: instruments by rule, the venue's
connection cap, names checked against the listing, and a new expiry mid-run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bytewax.testing import run_main

from dataflows.config import Config, ConfigError, VenueConfig
from dataflows.orderbook import build_flow
from sources.instruments.select import parse_rules
from sources.runtime.registry import Registry
from sources.simulator import SimulatorThread
from sources.simulator.market import load_recording
from sources.simulator.universe import Listing
from tests.helpers import read_dir

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
DERIBIT = [RECORDINGS / "deribit_options.jsonl.gz"]
BOOKS_ONLY = {"interval": "100ms", "depth": 0, "trades": False, "tickers": False}


@pytest.fixture(scope="module")
def recording():
    return load_recording(DERIBIT)


def deribit(sim: SimulatorThread, rules, products=(), **kw) -> VenueConfig:
    return VenueConfig(list(products), sim.url + "/deribit", dict(BOOKS_ONLY), 0,
                       tuple(parse_rules("deribit", rules)), "require",
                       rest_url=sim.http_url + "/deribit", **kw)


@pytest.mark.timeout(240)
def test_two_hundred_instruments_by_rule_within_the_connection_cap(recording, tmp_path):
    registry = Registry()
    with SimulatorThread(recording, speed=0, clone_books=True) as sim:
        cfg = Config(venues={"deribit": deribit(
            sim, [{"kind": "option", "base": "BTC", "top": 200, "by": "expiry"}])},
            exit_on_close=True, jsonl_dir=str(tmp_path), status_interval=0, bar_intervals=())
        started = time.monotonic()
        run_main(build_flow(cfg, registry))
        elapsed = time.monotonic() - started
        stats = sim.stats["deribit"]
    files = read_dir(tmp_path)
    assert len(files) == 200
    synced = sum(1 for recs in files.values()
                 if any(r["type"] == "status" and r["state"] == "synced" for r in recs))
    assert synced == 200
    feeds = registry.feeds
    # 100 instruments per connection by default: two connections, far below Deribit's 32
    assert len(feeds) == 2 and sorted(len(f.books) for f in feeds) == [100, 100]
    assert stats.peak_connections <= 32 and stats.refused_handshakes == 0
    assert max(stats.subscribe_sizes) <= 500
    print(f"200 instruments, {len(feeds)} connections, synced in {elapsed:.2f} s")


def test_an_unknown_name_fails_at_start_with_close_matches(recording, tmp_path):
    with SimulatorThread(recording, speed=0) as sim:
        cfg = Config(venues={"deribit": deribit(sim, [], ["ETH-9APR21-1950-X"])},
                     jsonl_dir=str(tmp_path))
        with pytest.raises(ConfigError) as ei:
            build_flow(cfg)
    message = str(ei.value)
    assert "ETH-9APR21-1950-X" in message and "ETH-9APR21-1950-C" in message
    assert "\n" not in message


@pytest.mark.timeout(180)
def test_a_new_expiry_listed_mid_run_is_subscribed(recording, tmp_path):
    """The simulator lists one more instrument 2 s after it starts; the flow, which
    re-resolves its rule every second, subscribes it on a connection with room and
    its book syncs, while the books it already had keep streaming."""
    newcomer = "ETH-9APR21-1950-C"
    others = ["ETH-16APR21-1600-C", "ETH-30APR21-2240-P"]
    registry = Registry()
    with SimulatorThread(recording, rate=15,
                         schedule=[Listing("deribit", newcomer, listed_after=2.0)]) as sim:
        cfg = Config(venues={"deribit": deribit(
            sim, [{"kind": "option", "match": "ETH-9APR21-*"}], others, refresh=1.0)},
            exit_on_close=True, jsonl_dir=str(tmp_path), status_interval=0, bar_intervals=())
        run_main(build_flow(cfg, registry))
    files = read_dir(tmp_path)
    assert f"deribit_{newcomer}.jsonl" in files
    late = files[f"deribit_{newcomer}.jsonl"]
    assert late[0]["type"] == "status" and late[0]["state"] == "synced"
    for name in others:
        assert f"deribit_{name}.jsonl" in files
    (feed,) = registry.feeds  # it joined the existing connection
    assert newcomer in feed.books

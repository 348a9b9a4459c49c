"""Backfill over REST against the simulator's candle endpoints, offline.

The simulator aggregates the recordings' raw trade frames on the server side; the
flow builds bars from the same frames through the venue parsers. The two must
agree window for window, which checks the venues' candle parsers, the paging and
the simulator at once. Then the store side: REST bars never replace trade-built
ones, each day is one version, and an interrupted backfill resumes without gaps or
duplicates.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from pathlib import Path
from typing import List

import pytest

pytest.importorskip("pyarrow")

import pyarrow.compute as pc

from bytewax.testing import run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow
from sinks.store.index import history
from sinks.store.layout import PartitionDay, Root
from sinks.store.read import read
from sinks.store.writer import StoreWriter, delete_day
from sources.candles.backfill import backfill, candle_api, fetch_range, host_limits
from sources.candles.model import Candle
from sources.simulator import SimulatorThread
from sources.simulator.candles import load_prints
from sources.transport.rest import RestClient, RestError

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
CASES = [  # capture, venue, product, interval (ms), page
    ("binance_spot_btcusdt.jsonl.gz", "binance", "BTCUSDT", 1000, 7),
    ("coinbase_advanced_btc_eth.jsonl.gz", "coinbase", "BTC-USD", 60_000, 2),
    ("binance_usdm_ethusdt.jsonl.gz", "binance_usdm", "ETHUSDT", 60_000, 3),
    ("binance_coinm_ethusd_perp.jsonl.gz", "binance_coinm", "ETHUSD_PERP", 60_000, 3),
]


def flow_bars(capture: Path, root: Path, interval: int) -> None:
    cfg = Config(replay=[str(capture)], sinks=["store"], bar_intervals=(interval,))
    cfg.store.update(root=str(root), mode="replace", kinds=["bar"])
    run_main(build_flow(cfg))


def simulator(capture: Path) -> SimulatorThread:
    return SimulatorThread([capture], speed=0, candles=load_prints([capture]))


def http(sim: SimulatorThread) -> str:
    return sim.url.replace("ws://", "http://")


def fetch(url: str, venue: str, product: str, start: int, end: int, interval: int,
          page: int) -> List[Candle]:
    api = candle_api(venue)

    async def go() -> List[Candle]:
        async with RestClient() as client:
            client.configure(url, host_limits(api))
            return await fetch_range(client, api, url, product, start, end, interval, page)

    return asyncio.run(go())


@pytest.mark.parametrize("capture, venue, product, interval, page", CASES)
def test_rest_candles_equal_the_bars_built_from_trades(tmp_path, capture, venue, product,
                                                       interval, page):
    flow_bars(RECORDINGS / capture, tmp_path, interval)
    bars = read(str(tmp_path), "bar", venue, product)
    start, end = int(bars["start"].min()) - 5 * interval, int(bars["start"].max()) + 5 * interval
    with simulator(RECORDINGS / capture) as sim:
        candles = fetch(http(sim), venue, product, start, end, interval, page)
    assert (end - start) // interval > 3 * page  # the range took several pages
    assert [c.start for c in candles] == list(bars["start"])
    for c, b in zip(candles, bars.itertuples()):
        assert (c.open, c.high, c.low, c.close) == (b.open, b.high, b.low, b.close)
        assert c.volume == pytest.approx(b.volume, rel=1e-9)
        if c.quote_volume is not None:
            assert c.quote_volume == pytest.approx(b.quote_volume, rel=1e-9)
            assert c.buy_volume == pytest.approx(b.buy_volume, rel=1e-9, abs=1e-12)
        if c.trades is not None:
            assert c.trades == b.trades


def test_deribit_chart_data_from_recorded_last_prices():
    capture = RECORDINGS / "deribit_options.jsonl.gz"
    prints = load_prints([capture])
    product = "ETH-9APR21-1950-C"
    first = prints[("deribit", product)][0].ts
    with simulator(capture) as sim:
        candles = fetch(http(sim), "deribit", product, first - 60_000, first + 180_000, 60_000,
                        2)
    assert candles and all(c.volume == 0.0 and c.low <= c.close <= c.high for c in candles)


def day_of(ms: float) -> date:
    return date(*time.gmtime(ms / 1000)[:3])


def test_backfill_never_replaces_trade_bars_and_resumes_after_an_interruption(tmp_path):
    capture = RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"
    flow_bars(capture, tmp_path / "flow", 60_000)
    every = read(str(tmp_path / "flow"), "bar", "coinbase", "BTC-USD", arrow=True)
    # A store holding the trade-built bars of the first two windows only (a flow
    # that started late): REST fills the rest, and never replaces those two.
    root = Root(str(tmp_path / "store"))
    writer = StoreWriter(root)
    writer.add([{"type": "bar", **r} for r in every.slice(0, 2).to_pylist()])
    writer.commit()
    built = read(root, "bar", "coinbase", "BTC-USD", all_revisions=True, arrow=True)
    day = day_of(built["start"][0].as_py())
    prints = load_prints([capture])[("coinbase", "BTC-USD")]
    windows = sorted({p.ts - p.ts % 60_000 for p in prints})
    assert len(windows) == 3 and set(built["start"].to_pylist()) < set(windows)
    with simulator(capture) as sim:
        written = asyncio.run(backfill(root, "coinbase", "BTC-USD", day, day, 60_000,
                                       base_url=http(sim)))
    assert written == [(day.isoformat(), len(windows) - built.num_rows)]
    after = read(root, "bar", "coinbase", "BTC-USD", all_revisions=True, arrow=True)
    assert after.filter(pc.equal(after["source"], "trades")).equals(built)  # untouched
    rest = after.filter(pc.equal(after["source"], "rest"))
    assert set(rest["start"].to_pylist()) == set(windows) - set(built["start"].to_pylist())
    final = read(root, "bar", "coinbase", "BTC-USD")
    assert list(final["start"]) == windows
    # An interrupted run: the next day's server is gone. The done day is skipped
    # without a request, the failing day writes nothing.
    days = (day - timedelta(days=1), day + timedelta(days=1))
    with simulator(capture) as sim:
        url = http(sim)
    with pytest.raises(RestError):
        asyncio.run(backfill(root, "coinbase", "BTC-USD", day, days[1], 60_000, base_url=url))
    assert root.partition_days("bar", "coinbase", "BTC-USD") == [day.isoformat()]
    pd = PartitionDay("bar", "coinbase", "BTC-USD", day.isoformat())
    versions = len(history(root, pd))
    with simulator(capture) as sim:
        again = asyncio.run(backfill(root, "coinbase", "BTC-USD", days[0], days[1], 60_000,
                                     base_url=http(sim)))
    assert again == [(days[0].isoformat(), 0), (days[1].isoformat(), 0)]
    assert len(history(root, pd)) == versions  # the complete day was not written again
    assert list(read(root, "bar", "coinbase", "BTC-USD")["start"]) == windows


def test_a_backfill_run_twice_replaces_its_own_rest_bars(tmp_path):
    capture = RECORDINGS / "binance_usdm_ethusdt.jsonl.gz"
    root = Root(str(tmp_path / "store"))
    first = load_prints([capture])[("binance_usdm", "ETHUSDT")][0].ts
    day = day_of(first)
    with simulator(capture) as sim:
        asyncio.run(backfill(root, "binance_usdm", "ETHUSDT", day, day, 60_000,
                             base_url=http(sim)))
        pd = PartitionDay("bar", "binance_usdm", "ETHUSDT", day.isoformat())
        # a complete day is skipped; a forced redo (its entry gone from the current
        # version, as after a delete) writes a fresh version, never a second copy
        delete_day(root, pd, by="test", reason="redo")
        asyncio.run(backfill(root, "binance_usdm", "ETHUSDT", day, day, 60_000,
                             base_url=http(sim)))
    bars = read(root, "bar", "binance_usdm", "ETHUSDT", all_revisions=True)
    assert len(bars) == len(set(bars["start"])) == 1
    assert [v.rows for v in history(root, pd)] == [1, 1]


def test_unknown_venue_and_interval_fail_with_one_line(tmp_path):
    root = Root(str(tmp_path))
    with pytest.raises(ValueError, match="no candle endpoint for venue 'kraken'; valid"):
        asyncio.run(backfill(root, "kraken", "X", date.today(), date.today(), 60_000))
    with pytest.raises(ValueError, match="coinbase has no 1s candles; valid intervals: 60s"):
        asyncio.run(backfill(root, "coinbase", "BTC-USD", date.today(), date.today(), 1000))

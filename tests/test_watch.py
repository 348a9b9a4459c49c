"""The per-product view behind the status line, the metrics (``lobstream top``) and the
end-of-run table, after a real replay of the bundled recordings in this process."""

from __future__ import annotations

from bytewax.testing import run_main

from dataflows.config import load_config
from dataflows.monitoring import LobstreamCollector, status_line
from dataflows.orderbook import build_flow
from dataflows.report import end_table, exit_code
from dataflows.watch import Activity, products
from sources.runtime.registry import Registry
from tests.runs import COINBASE, DERIBIT, DERIBIT_OPTIONS


def test_views_metrics_status_and_table_agree_with_the_book_states(tmp_path):
    cfg = load_config({"LOBSTREAM_REPLAY": f"{COINBASE},{DERIBIT}",
                       "LOBSTREAM_JSONL_DIR": str(tmp_path), "LOBSTREAM_BARS_INTERVALS": "5s"})
    registry = Registry()
    run_main(build_flow(cfg, registry))
    activity = Activity(registry)
    views = {v.name: v for v in products(registry, activity)}
    assert set(views) == {"coinbase:BTC-USD", "coinbase:ETH-USD"} | \
        {f"deribit:{p}" for p in DERIBIT_OPTIONS}
    for (venue, product), state in registry.books.items():
        v = views[f"{venue}:{product}"]
        assert v.state == "synced" and v.updates == state.counts["updates"] > 0
        assert (v.bid, v.bid_size, v.ask, v.ask_size) == state.top
        assert v.age is not None and v.age >= 0.0
    btc = views["coinbase:BTC-USD"]
    assert btc.trades > 0 and btc.bars > 0 and btc.last_bar["interval_s"] == 5.0
    assert btc.spread_bps == (btc.ask - btc.bid) / ((btc.ask + btc.bid) / 2) * 1e4

    gauges = {}
    for family in LobstreamCollector(registry, activity).collect():
        for s in family.samples:
            gauges[(s.name, s.labels.get("product"), s.labels.get("state"))] = s.value
    assert gauges[("lobstream_book_bid_price", "BTC-USD", None)] == btc.bid
    assert gauges[("lobstream_book_spread_bps", "BTC-USD", None)] == btc.spread_bps
    assert gauges[("lobstream_product_state", "BTC-USD", "synced")] == 1.0
    assert gauges[("lobstream_bar_trades", "BTC-USD", None)] == btc.last_bar["trades"]
    # A side that is empty has no gauge: never a stale or made-up price.
    assert ("lobstream_book_ask_price", "BTC-31DEC21-300000-P", None) not in gauges

    line = status_line(registry, activity)
    assert line.startswith("books 12/12 synced; connections 2/2 up; ")
    assert "last update: " in line and "failing" not in line
    table = end_table(list(views.values())).splitlines()
    assert len(table) == 13 and table[0].split()[0] == "product"
    assert exit_code(list(views.values())) == 0

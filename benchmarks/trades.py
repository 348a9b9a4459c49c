"""Trades per second through the trade path: parse, feed, book step with bars.

    python -m benchmarks.trades --passes N --out OUT.json

The Binance spot recording's ``@trade`` frames, repeated ``N`` times
(:func:`benchmarks.data.repeated_trades`), each handed to a replay-style
:class:`~sources.feed.feed.Feed` (parse, product checks, the exchange clock for
bars) and every item it yields to the flow's own book step
(:class:`dataflows.orderbook.BookStep`: trade-id dedup and gap check, the trade
record, bars at the default intervals). A plain loop in a fresh process, timed in
CPU seconds: the trade path's Python cost without Bytewax. Every trade must be
counted once.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any, Dict, List

import orjson

from benchmarks.data import repeated_trades
from dataflows.config import Config
from dataflows.orderbook import BookStep, clock_ms
from sources.feed.feed import Feed
from sources.feed.reporting import BadInput
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.venues import get_venue
from state.product import BarSpec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    frames = repeated_trades(args.passes)
    cfg = Config()  # the defaults a user runs with: 1 min bars
    bars = BarSpec(cfg.bar_intervals, cfg.bar_lateness * 1000.0, cfg.bar_keep * 1000.0,
                   cfg.bar_empty)
    step = BookStep(cfg.depth, cfg.alert_bps, ResyncRequests(), Registry(), bars)
    feed = Feed(get_venue("binance"), None, BadInput(), "binance:bench", clock_ms=clock_ms(cfg))
    logics: Dict[str, Any] = {}
    counts: Dict[str, int] = {}
    gc.collect()
    t0 = time.process_time()
    for ts, raw in frames:
        items: List[Any] = []
        feed.on_frame(raw, ts, items)
        for key, item in items:
            logic = logics.get(key)
            if logic is None:
                logic = logics[key] = step(None)
            records, _ = logic.on_item(item)
            for rec in records:
                counts[rec["type"]] = counts.get(rec["type"], 0) + 1
    seconds = time.process_time() - t0
    if counts.get("trade") != len(frames):
        raise RuntimeError(f"{len(frames)} trade frames gave records {counts}")
    with open(args.out, "wb") as f:
        f.write(orjson.dumps({"trades": len(frames), "cpu_s": seconds,
                              "trades_per_s": len(frames) / seconds, "records": counts,
                              "bar_intervals_ms": list(cfg.bar_intervals)}))


if __name__ == "__main__":
    main()

"""The 46,000-level snapshot (decode to ready book) and the memory a book level takes.

    python -m benchmarks.snapshot --repeats N --out OUT.json

Both in a fresh process holding nothing but the recorded snapshot frames, so
garbage collection costs what it costs in a flow (a parent's heap would make every
collection triggered by the 46,000 new levels slower).

*Decode to ready book*: the recorded 5.1 MB BTC-USD ``l2_data`` snapshot frame's
bytes through the venue's parser (typed decode and validation), then the
product's state takes it as the flow's book step does
(``ProductState.on_item``: the book replaced, the top window reset, the first
summary built). The state is kept between repeats, so each repeat is a resync:
the old book is freed too. Parse alone and ``OrderBook.replace`` alone are given
for reference. Times are CPU time (the work is single-threaded, so it is the wall
time of an undisturbed run).

*Memory per level*: tracemalloc's count of the bytes still allocated after both
recorded snapshots became product states (frames and events freed), over their
level count; the RSS growth of the same for comparison.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import orjson

from benchmarks.data import COINBASE_CAPTURE, recv_frames
from sources.venues import coinbase
from state.book import OrderBook
from state.product import ProductState

DEPTH = 10
ALERT_BPS = 10.0


def snapshot_frames() -> Dict[str, Tuple[bytes, float]]:
    """product -> (raw, ts) of the recording's ``l2_data`` snapshot frames."""
    out = {}
    for f in recv_frames(COINBASE_CAPTURE):
        if f.msg.get("channel") == "l2_data" and f.msg["events"][0]["type"] == "snapshot":
            out[f.msg["events"][0]["product_id"]] = (f.raw, f.ts)
    return out


def _median_ms(fn: Callable[[], Any], repeats: int) -> Tuple[float, List[float]]:
    """Median CPU ms of ``fn`` over ``repeats`` calls, and every call's."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1e3)
    return statistics.median(times), times


def decode_to_book(raw: bytes, ts: float, repeats: int) -> Dict[str, Any]:
    state = ProductState()

    def ready() -> None:
        records = state.on_item(coinbase.parse(raw, ts).events[0], DEPTH, ALERT_BPS)
        if not state.valid or not records:
            raise RuntimeError(f"the snapshot did not give a valid book: {records}")

    ms, runs = _median_ms(ready, repeats)
    event = coinbase.parse(raw, ts).events[0]
    parse_ms, _ = _median_ms(lambda: coinbase.parse(raw, ts), repeats)
    replace_ms, _ = _median_ms(lambda: OrderBook().replace(event.bids, event.asks), repeats)
    return {"ms": ms, "runs_ms": runs, "parse_ms": parse_ms, "replace_ms": replace_ms,
            "levels": len(event.bids) + len(event.asks), "book_levels": len(state.book),
            "frame_bytes": len(raw)}


def memory(frames: List[Tuple[bytes, float]]) -> Dict[str, Any]:
    def build() -> List[ProductState]:
        states = []
        for raw, ts in frames:
            st = ProductState()
            st.on_item(coinbase.parse(raw, ts).events[0], DEPTH, ALERT_BPS)
            states.append(st)
        gc.collect()
        return states

    rss0 = _rss()
    states = build()
    rss1 = _rss()
    del states
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    states = build()
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    levels = sum(len(s.book) for s in states)
    return {"levels": levels, "tracemalloc_bytes": traced,
            "bytes_per_level": traced / levels, "rss_delta_bytes": rss1 - rss0,
            "rss_bytes_per_level": (rss1 - rss0) / levels}


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    frames = snapshot_frames()
    gc.collect()
    raw, ts = frames["BTC-USD"]
    # Memory first, while the process's heap has not yet grown around a book.
    result = {"memory": memory(list(frames.values()))}
    result["snapshot"] = decode_to_book(raw, ts, args.repeats)
    Path(args.out).write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()

"""Records/s of the JSON-lines sink's ``write_batch``, and the cost of an open-file miss.

    python benchmarks/jsonl_sink.py [--repeats 9] [--tree DIR ...]

Each scenario writes 100,000 summary-like records (19 fields, 347 bytes of JSON)
to a fresh directory in ``/dev/shm`` (the page cache: what is measured is the
sink, not a disk), timing the process's CPU (user + system), which shared-machine
noise disturbs less than wall time. Every ``--tree`` (default: this checkout) is
a checkout whose ``sinks.jsonl.JsonlSink`` is measured in its own process; the
repeats alternate between trees, so a before/after comparison
(``--tree ../main --tree .``) shares the machine's noise. Printed: the best and
the median of the repeats.

The first scenario has the shape of the real flow's sink batches, measured on the
bundled recordings: 536 records per batch in runs of 52 records of one product.
The last two write 1,000 products one record each, once with 64 open files
(every write closes one file and opens another) and once with 2,000 (none does);
their difference per write is the cost of a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

N = 100_000
#: (name, products, records per run of one product, batch size, max_open)
SCENARIOS: List[Tuple[str, int, int, int, int]] = [
    ("flow-shaped: 2 products, runs of 50, batches of 500", 2, 50, 500, 64),
    ("50 products, runs of 10, batches of 500", 50, 10, 500, 64),
    ("2 products interleaved record by record", 2, 1, 500, 64),
    ("2 products, runs of 50, batches of 10", 2, 50, 10, 64),
    ("1000 products x 1 record, max_open 64 (all misses)", 1000, 1, 1000, 64),
    ("1000 products x 1 record, max_open 2000 (no miss)", 1000, 1, 1000, 2000),
]


def records(products: int, run: int) -> List[Tuple[str, Dict[str, Any]]]:
    out = []
    for i in range(N):
        product = f"P{(i // run) % products}-USD"
        rec = {"type": "summary", "venue": "coinbase", "product": product,
               "ts_exchange": 1786309552101.0 + i, "ts_recv": 1786309552105.5 + i, "seq": 1000 + i,
               "bid_px": 65083.66, "bid_sz": 0.0123, "ask_px": 65083.67, "ask_sz": 1.5,
               "spread": 0.01, "spread_bps": 0.0015, "mid": 65083.665, "microprice": 65083.6651,
               "imbalance": -0.98, "depth_imbalance": 0.12, "ofi": 0.5,
               "bid_levels": 18764, "ask_levels": 27236}
        out.append((f"coinbase:{product}", rec))
    return out


def measure_once() -> List[float]:
    """Records/s of each scenario, with the ``JsonlSink`` importable here."""
    from sinks.jsonl import JsonlSink

    rates = []
    for _, products, run, batch, max_open in SCENARIOS:
        items = records(products, run)
        batches = [items[i:i + batch] for i in range(0, N, batch)]
        out = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        try:
            sink = JsonlSink(out, max_open=max_open)
        except TypeError:  # a checkout from before max_open
            sink = JsonlSink(out)
        part = sink.build("bench", 0, 1)
        t0 = time.process_time()
        for b in batches:
            part.write_batch(b)
        part.close()
        rates.append(N / (time.process_time() - t0))
        shutil.rmtree(out)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--tree", action="append", default=[])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_once()))
        return
    trees = [str(Path(t).resolve()) for t in args.tree] or [str(Path(__file__).resolve().parents[1])]
    rates: Dict[str, List[List[float]]] = {t: [] for t in trees}
    for _ in range(args.repeats):
        for tree in trees:
            out = subprocess.run([sys.executable, __file__, "--one"], cwd=tree, check=True,
                                 env=dict(os.environ, PYTHONPATH=tree), capture_output=True,
                                 text=True)
            rates[tree].append(json.loads(out.stdout))
    for tree in trees:
        print(tree)
        for i, (name, *_) in enumerate(SCENARIOS):
            column = [r[i] for r in rates[tree]]
            print(f"  {name:<55} best {max(column) / 1e3:6.0f}k  median "
                  f"{statistics.median(column) / 1e3:6.0f}k records/s")
        miss = [1e6 / r[-2] - 1e6 / r[-1] for r in rates[tree]]
        print(f"  cost of a miss (close + open), median: {statistics.median(miss):.2f} us")


if __name__ == "__main__":
    main()

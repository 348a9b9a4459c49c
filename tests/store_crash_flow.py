"""A flow for the store's crash test: synthetic trades of four products, paced, into
the store sink (which rewinds on resume: this source replays from its snapshot), run
under Bytewax recovery by :mod:`tests.test_store_crash`."""

from __future__ import annotations

import os
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

from sinks.store.sink import StoreSink

DAY0 = 1_786_000_000_000 - 1_786_000_000_000 % 86_400_000
N = int(os.environ["CRASH_ROWS"])


def trade(i: int) -> dict:
    return {"type": "trade", "venue": "coinbase", "product": f"P{i % 4}",
            "ts_exchange": DAY0 + i * 10.0, "ts_recv": DAY0 + i * 10.0 + 1.0,
            "trade_id": str(i), "price": 100.0 + i % 7, "size": 0.5, "side": "buy",
            "base_size": 0.5, "notional": 50.0, "fills": 1}


def paced(item):
    time.sleep(0.002)  # ~500 items/s: several epochs of 1 s to kill in the middle of
    return item


flow = Dataflow("store_crash")
items = op.input("in", flow, TestingSource([(f"coinbase:P{i % 4}", trade(i)) for i in range(N)],
                                           batch_size=20))
op.output("store", op.map("paced", items, paced),
          StoreSink(os.environ["CRASH_ROOT"], "append", max_files=4, resume="rewind"))

"""A flow for the placement test: a stateful step stamps each trade with its process
id, then the store sink writes it; run in two processes by
:mod:`tests.test_store_placement`."""

from __future__ import annotations

import os

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

from sinks.store.sink import StoreSink

PRODUCTS = 24
DAY0 = 1_786_000_000_000


def trade(i: int) -> dict:
    return {"type": "trade", "venue": "coinbase", "product": f"P{i % PRODUCTS}",
            "ts_exchange": DAY0 + i, "ts_recv": DAY0 + i, "trade_id": str(i), "price": 1.0,
            "size": 1.0, "side": "buy", "base_size": 1.0, "notional": 1.0, "fills": 1}


def stamp(state, rec):
    return state, {**rec, "trade_id": f"{rec['trade_id']}@{os.getpid()}"}


flow = Dataflow("store_placement")
items = op.input("in", flow, TestingSource([(f"coinbase:P{i % PRODUCTS}", trade(i))
                                            for i in range(PRODUCTS * 20)]))
op.output("store", op.stateful_map("book", items, stamp), StoreSink(os.environ["PLACE_ROOT"]))

"""The floor: the least a Python pipeline must do per Coinbase frame, without Bytewax.

    python -m benchmarks.floor --capture PATH --warmup N --out OUT.json

A typed msgspec decode (numeric strings to floats in C, ``strict=False``, no
bounds), one plain dict of sizes per side, and the best bid and ask with their
sizes, mid and spread after every frame. The best prices come from a heap per
side with lazy deletion (a price is pushed when it enters the side; a best price
no longer in the dict is popped when the top is read), so no frame scans a side:
with ``max()`` over the dict after each removal of the best level, the recording
cost 24 µs per frame, as the best level is removed in about one frame in twenty.

No sequence checks, no validation beyond the decode's types, no records, no
output: anything lobstream does on top of this is what its per-frame cost is
compared against. Imports only msgspec and :mod:`benchmarks.frames`, so lobstream's
code is not in it. The final book sizes and tops are reported so the floor can be
checked against lobstream's books.
"""

from __future__ import annotations

import argparse
import json
from heapq import heapify, heappop, heappush
from typing import Dict, List, Tuple, Union

import msgspec

from benchmarks.frames import received
from benchmarks.timing import timed_pass


class _Update(msgspec.Struct):
    side: str
    price_level: float
    new_quantity: float


class _Event(msgspec.Struct):
    type: str
    product_id: str
    updates: List[_Update]


class _L2(msgspec.Struct, tag_field="channel", tag="l2_data"):
    sequence_num: int
    events: List[_Event]


#: The recording's other channels: decoded to nothing but their tag.
_OTHERS = tuple(msgspec.defstruct(f"_Other{i}", [], tag_field="channel", tag=name)
                for i, name in enumerate(("subscriptions", "heartbeats", "ticker",
                                          "ticker_batch", "market_trades", "candles",
                                          "status")))
DECODER = msgspec.json.Decoder(Union[(_L2,) + _OTHERS], strict=False)  # type: ignore[valid-type]

Top = Tuple[float, float, float, float, float, float]


class Book:
    """Sizes by price per side, and a heap per side for the best price."""

    __slots__ = ("bids", "asks", "bid_heap", "ask_heap")

    def __init__(self, updates: List[_Update]) -> None:
        self.bids: Dict[float, float] = {u.price_level: u.new_quantity for u in updates
                                         if u.side == "bid" and u.new_quantity > 0.0}
        self.asks: Dict[float, float] = {u.price_level: u.new_quantity for u in updates
                                         if u.side != "bid" and u.new_quantity > 0.0}
        self.bid_heap = [-p for p in self.bids]
        self.ask_heap = list(self.asks)
        heapify(self.bid_heap)
        heapify(self.ask_heap)

    def apply(self, updates: List[_Update]) -> None:
        bids, asks = self.bids, self.asks
        for u in updates:
            price, size = u.price_level, u.new_quantity
            if u.side == "bid":
                if size > 0.0:
                    if price not in bids:
                        heappush(self.bid_heap, -price)
                    bids[price] = size
                else:
                    bids.pop(price, None)
            elif size > 0.0:
                if price not in asks:
                    heappush(self.ask_heap, price)
                asks[price] = size
            else:
                asks.pop(price, None)

    def top(self) -> Top:
        """Best bid, its size, best ask, its size, mid, spread (both sides non-empty)."""
        bids, asks, bh, ah = self.bids, self.asks, self.bid_heap, self.ask_heap
        while -bh[0] not in bids:
            heappop(bh)
        while ah[0] not in asks:
            heappop(ah)
        bid, ask = -bh[0], ah[0]
        return (bid, bids[bid], ask, asks[ask], (bid + ask) * 0.5, ask - bid)


def run(books: Dict[str, Book], frames: List[bytes]) -> Dict[str, Top]:
    """Decode each frame, apply it, read the top of book: the timed loop."""
    decode = DECODER.decode
    tops: Dict[str, Top] = {}
    for raw in frames:
        frame = decode(raw)
        if type(frame) is not _L2:
            continue
        for ev in frame.events:
            book = books.get(ev.product_id)
            if ev.type == "snapshot":
                book = books[ev.product_id] = Book(ev.updates)
            elif book is None:
                continue  # an update before the product's snapshot
            else:
                book.apply(ev.updates)
            tops[ev.product_id] = book.top()
    return tops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", required=True)
    p.add_argument("--warmup", type=int, required=True, help="frames handled before timing")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    frames = [raw for _, raw in received(args.capture)]
    books: Dict[str, Book] = {}
    run(books, frames[:args.warmup])
    timed = frames[args.warmup:]
    tops, times = timed_pass(lambda: run(books, timed), len(timed))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({**times, "top": tops,
                   "books": {p: {"bids": len(b.bids), "asks": len(b.asks)}
                             for p, b in sorted(books.items())}}, f)


if __name__ == "__main__":
    main()

"""Recorded market data, indexed per venue, channel and product for replay.

The simulator does not replay connections as recorded: each client connection gets
its own cursor per product it subscribes, starting at the beginning of that
product's recording. So the captures are split here into one ordered list of
frames per product, each keeping its recorded receive time for pacing.

Frames are recognised by shape, not by the capture's ``venue`` label, so any capture
holding Coinbase Advanced Trade, Coinbase Exchange or Deribit frames can be served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

from sources.capture.format import read_capture

#: Coinbase Advanced Trade channel names as sent in messages, keyed by the name a
#: client subscribes with. Book data arrives as ``l2_data`` for a ``level2``
#: subscription; the others keep their name.
COINBASE_CHANNELS: Dict[str, str] = {
    "level2": "l2_data",
    "ticker": "ticker",
    "market_trades": "market_trades",
}

#: For the non-book Coinbase channels, the event key holding per-product items.
_ITEM_KEYS = {"ticker": "tickers", "market_trades": "trades"}

#: Coinbase Exchange message types: book data, and the trade-stamped messages whose
#: ``sequence``/``trade_id`` the simulated heartbeats report.
EXCHANGE_BOOK_TYPES = frozenset(("snapshot", "l2update"))
EXCHANGE_TRADE_TYPES = frozenset(("ticker", "match", "last_match"))


class RecordedFrame(NamedTuple):
    """One recorded payload for one product: a Coinbase Advanced Trade event, a
    Coinbase Exchange message or a Deribit ``params.data``, as decoded from the
    capture (prices stay as recorded)."""

    ts: float  # recorded receive time, epoch ms
    payload: Dict[str, Any]


@dataclass
class Recording:
    """All servable data from a set of captures.

    ``coinbase[message_channel][product]``, ``coinbase_exchange[product]`` (book
    messages), ``coinbase_exchange_trades[product]`` (ticker and match messages) and
    ``deribit[instrument]`` are frame lists in recorded order. A product is taken
    from the first connection
    (capture file and stream) that carried it: two recordings of one product
    interleaved would not form one consistent book.
    """

    coinbase: Dict[str, Dict[str, List[RecordedFrame]]] = field(default_factory=dict)
    deribit: Dict[str, List[RecordedFrame]] = field(default_factory=dict)
    coinbase_exchange: Dict[str, List[RecordedFrame]] = field(default_factory=dict)
    coinbase_exchange_trades: Dict[str, List[RecordedFrame]] = field(default_factory=dict)

    def coinbase_products(self) -> set[str]:
        """Every product any Coinbase channel has data for."""
        return {p for by_product in self.coinbase.values() for p in by_product}

    def book_start(self, venue: str) -> Optional[float]:
        """Recorded time of the venue's first book frame: time zero for pacing, so
        all products of a venue keep their recorded spacing relative to each other."""
        books = {"coinbase": self.coinbase.get("l2_data", {}),
                 "coinbase_exchange": self.coinbase_exchange}.get(venue, self.deribit)
        firsts = [frames[0].ts for frames in books.values() if frames]
        return min(firsts) if firsts else None


class _Indexer:
    """Collects frames while enforcing the one-connection-per-product rule."""

    def __init__(self) -> None:
        self.recording = Recording()
        self._owner: Dict[Tuple[str, str], Tuple[int, str]] = {}

    def add(self, key: Tuple[str, str], owner: Tuple[int, str],
            target: List[RecordedFrame], frame: RecordedFrame) -> None:
        if self._owner.setdefault(key, owner) == owner:
            target.append(frame)

    def coinbase(self, owner: Tuple[int, str], ts: float, msg: Dict[str, Any]) -> None:
        channel = msg.get("channel")
        if not isinstance(channel, str) or channel not in COINBASE_CHANNELS.values():
            return
        by_product = self.recording.coinbase.setdefault(channel, {})
        for event in msg.get("events") or ():
            for product, payload in _split_event(channel, event):
                self.add((channel, product), owner, by_product.setdefault(product, []),
                         RecordedFrame(ts, payload))

    def deribit(self, owner: Tuple[int, str], ts: float, msg: Dict[str, Any]) -> None:
        params = msg.get("params") or {}
        parts = str(params.get("channel", "")).split(".")
        data = params.get("data")
        # Only the plain book channel (book.INSTRUMENT.INTERVAL) is a change chain;
        # grouped channels carry whole top-N books with other semantics.
        if len(parts) != 3 or parts[0] != "book" or not isinstance(data, dict):
            return
        instrument = data.get("instrument_name", parts[1])
        self.add(("book", instrument), owner,
                 self.recording.deribit.setdefault(instrument, []), RecordedFrame(ts, data))

    def coinbase_exchange(self, owner: Tuple[int, str], ts: float, msg: Dict[str, Any]) -> None:
        product = msg.get("product_id")
        kind = msg.get("type")
        if not isinstance(product, str):
            return
        if kind in EXCHANGE_BOOK_TYPES:
            target = self.recording.coinbase_exchange.setdefault(product, [])
        elif kind in EXCHANGE_TRADE_TYPES:
            target = self.recording.coinbase_exchange_trades.setdefault(product, [])
        else:
            return
        self.add(("coinbase_exchange", product), owner, target, RecordedFrame(ts, msg))


def _split_event(channel: str, event: Dict[str, Any]) -> Iterable[Tuple[str, Dict[str, Any]]]:
    """Yield ``(product, event)`` pairs: l2_data events name one product already;
    ticker and trade events may mix products and are split into one event each."""
    if channel == "l2_data":
        if "product_id" in event:
            yield event["product_id"], event
        return
    key = _ITEM_KEYS[channel]
    groups: Dict[str, List[Any]] = {}
    for item in event.get(key) or ():
        groups.setdefault(item.get("product_id", ""), []).append(item)
    for product, items in groups.items():
        yield product, {**event, key: items}


def load_recording(paths: Iterable[Union[str, Path]]) -> Recording:
    """Index the received frames of every capture, in the order given."""
    indexer = _Indexer()
    for i, path in enumerate(paths):
        for frame in read_capture(path):
            msg = frame.msg
            if frame.dir != "recv" or not isinstance(msg, dict):
                continue
            owner = (i, frame.stream)
            if "channel" in msg and "events" in msg:
                indexer.coinbase(owner, frame.ts, msg)
            elif msg.get("method") == "subscription":
                indexer.deribit(owner, frame.ts, msg)
            elif "type" in msg and "channel" not in msg:
                indexer.coinbase_exchange(owner, frame.ts, msg)
    return indexer.recording

"""Fuzzing the input side: mutated real frames of every venue, through the feed and the book step.

The frames are the bundled recordings (Coinbase Advanced Trade, Coinbase
Exchange, Deribit; snapshots cut to their best :data:`SNAPSHOT_LEVELS` levels per
side so that a frame costs microseconds, not the 10 ms of a 46,000-level book).
A small model exchange per venue streams them in a loop, numbers them
consistently (``sequence_num``; ``change_id``/``prev_change_id``) and answers the
feed's subscriptions and resubscriptions with a reply and the recorded snapshot,
so books keep being rebuilt after every gap and the fuzz reaches the code that
applies updates, not only the code that rejects frames.

A share of the frames, different in each session, is mutated: types swapped,
values deleted, numbers replaced by extremes, numeric text or booleans, nesting
deepened past the parsers' limits, keys renamed or duplicated, strings replaced by
control characters, bytes truncated, flipped or made invalid UTF-8; frames are
also dropped, repeated and reordered, and connections restarted. Each frame goes
through :meth:`Feed.on_frame` and what comes out through
:meth:`ProductState.on_item`, as in the dataflow (a crossed book's resync request
goes back to the feed, as the book step's does).

Invariants, on every frame: no exception escapes; the frame is counted once, and
as bad input at most once; every level that reaches a book has a finite price in
(0, MAX_PRICE] and a size in [0, MAX_SIZE]; the feed never passes an update for a
book it has invalidated until a snapshot rebuilt it, nor for a book whose update
was in a frame it rejected (where that frame still named the book, or could not
be read) until it resynced it; a summary is only emitted from a book that is
valid and rebuilt since its last invalidation, is never crossed or locked, and
its figures are finite and consistent (mid and microprice between bid and ask,
imbalances in [-1, 1]); the requests the feed sends stay bounded (no resync
storm). Books are also checked whole every :data:`BOOK_CHECK_EVERY` frames.

``--fuzz-frames N`` (``LOBSTREAM_FUZZ_FRAMES``) sets how many frames are tried,
100,000 by default (11-20 s on a shared 2-core machine, 1,000,000 in 3-3.5 min);
``--fuzz-seed S`` (``LOBSTREAM_FUZZ_SEED``) the seed, ``random`` for a fresh one.
The run is a pure function of the seed and the frame count; a failure names both,
the session, the mutations and the frame. Reproduce it under pytest: msgspec's
nesting limit counts the caller's stack, so nests just under 1,000 deep decode
differently from a script, and the run takes another course.
"""

from __future__ import annotations

import heapq
import math
import random
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import orjson
import pytest
from sortedcontainers import SortedDict

from sources.capture.format import read_capture
from sources.feed.feed import Feed, Keyed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.venues import get_venue
from sources.venues.base import (MAX_MS, MAX_PRICE, MAX_SEQ, MAX_SIZE, MIN_MS, FrameError,
                                 valid_product)
from sources.venues.binance import snapshot_symbol
from state.events import REFRESH, SNAPSHOT, UPDATE, BookEvent, BookStatus, Clock, Ticker, Trade
from state.bars import BAR_FIELDS
from state.product import BarSpec, ProductState

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
CAPTURES = {
    "coinbase": ("coinbase_advanced_btc_eth.jsonl.gz",),
    "coinbase_exchange": ("coinbase_exchange_level2.jsonl.gz",),
    "deribit": ("deribit_options.jsonl.gz", "deribit_gap.jsonl"),
    "binance": ("binance_spot_btcusdt.jsonl.gz", "binance_spot_10pairs.jsonl.gz"),
    "binance_usdm": ("binance_usdm_ethusdt.jsonl.gz",),
    "binance_coinm": ("binance_coinm_ethusd_perp.jsonl.gz",),
}
#: Binance venues: books come back by REST snapshots (``Feed.requests``).
BINANCE = ("binance", "binance_usdm", "binance_coinm")
#: Binance bookTicker events (three frames in four of the recordings) are ignored
#: by lobstream: one in this many is kept, so the fuzz spends its frames on the
#: ones that change books, trades and bars.
BOOK_TICKER_KEPT = 40
#: Levels per side kept of each recorded snapshot.
SNAPSHOT_LEVELS = 50
DEPTH = 10
ALERT_BPS = 10.0
BOOK_CHECK_EVERY = 997
#: Genuine diffs dropped in a row from a synced book (or genuine trades not counted)
#: that mean a forged number froze it: STUCK_AFTER (64) and a margin.
LIVENESS = 200
#: Receive-time step per frame (ms): the feed's 15 s snapshot retry fires within a
#: session (after 750 frames).
TS_STEP_MS = 20.0
T0_MS = 1.786e12

# ------------------------------------------------------------------ the corpus


def _trim_coinbase(msg: Any) -> Any:
    events = []
    for ev in msg["events"]:
        if ev.get("type") == "snapshot":
            ups = ev["updates"]
            bids = sorted((u for u in ups if u["side"] == "bid"),
                          key=lambda u: -float(u["price_level"]))[:SNAPSHOT_LEVELS]
            asks = sorted((u for u in ups if u["side"] != "bid"),
                          key=lambda u: float(u["price_level"]))[:SNAPSHOT_LEVELS]
            ev = dict(ev, updates=bids + asks)
        events.append(ev)
    return dict(msg, events=events)


def _trim_levels(data: Dict[str, Any]) -> Dict[str, Any]:
    return dict(data, bids=data["bids"][:SNAPSHOT_LEVELS], asks=data["asks"][:SNAPSHOT_LEVELS])


@dataclass
class Corpus:
    """One venue's recorded frames (decoded), its recorded snapshots by product,
    and the frames its model exchange answers with."""

    venue: str
    frames: List[Any]
    snapshots: Dict[str, Any]
    extras: List[Any] = field(default_factory=list)


def _load(venue: str) -> Corpus:
    frames: List[Any] = []
    snapshots: Dict[str, Any] = {}
    for name in CAPTURES[venue]:
        captured = list(read_capture(RECORDINGS / name))
        kept = _binance_kept(captured) if venue in BINANCE else None
        for f in captured:
            if f.dir == "rest" and f.url is not None:
                symbol = snapshot_symbol(f.url)
                assert symbol is not None, f.url
                snapshots[symbol] = _trim_levels(f.msg)
                continue
            if f.dir != "recv" or not isinstance(f.msg, dict):
                continue
            msg = f.msg
            if kept is not None and not kept(msg):
                continue
            if venue == "coinbase" and msg.get("channel") == "l2_data":
                msg = _trim_coinbase(msg)
                for ev in msg["events"]:
                    if ev["type"] == "snapshot":
                        snapshots[ev["product_id"]] = dict(msg, events=[ev])
            elif venue == "coinbase_exchange" and msg.get("type") == "snapshot":
                msg = _trim_levels(msg)
                snapshots[msg["product_id"]] = msg
            elif venue == "deribit" and msg.get("method") == "subscription" \
                    and msg["params"]["channel"].startswith("book."):
                data = msg["params"]["data"]
                if "prev_change_id" not in data:
                    data = _trim_levels(data)
                    msg = {**msg, "params": {**msg["params"], "data": data}}
                    snapshots[data["instrument_name"]] = msg
            frames.append(msg)
    corpus = Corpus(venue, frames, snapshots)
    # Legitimate frame shapes the recordings lack (documented traffic).
    if venue == "coinbase":
        corpus.extras = [{"type": "error", "message": "Failed to subscribe",
                          "reason": "ZZZ-USD is not a valid product"}]
    elif venue == "coinbase_exchange":
        corpus.extras = [
            {"type": "heartbeat", "sequence": 90, "last_trade_id": 20, "product_id": "SKL-USD",
             "time": "2021-04-17T16:43:37.075687Z"},
            {"type": "error", "message": "Failed to subscribe",
             "reason": "ZZZ-USD is not a valid product"}]
    elif venue in BINANCE:
        corpus.extras = _binance_extras(venue, frames)
    else:
        corpus.extras = [
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}},
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}},
            {"jsonrpc": "2.0", "id": None, "error": {"code": 11050, "message": "bad_request"}},
            {"jsonrpc": "2.0", "id": 999_999, "error": {"code": 10028,
                                                        "message": "too_many_requests"}},
            _grouped(next(iter(snapshots.values()))),
            _deribit_trades(next(iter(snapshots.values()))),
        ]
    return corpus


def _binance_kept(captured: List[Any]) -> Callable[[Any], bool]:
    """Which frames of a Binance recording the corpus keeps: every depth diff, at
    most as many trades (the USD-M and spot recordings hold two or three per
    diff: summaries come from diffs), and one bookTicker event in BOOK_TICKER_KEPT
    (lobstream ignores them)."""
    streams = Counter(f.msg["stream"].split("@", 1)[1].split("@")[0] for f in captured
                      if f.dir == "recv")
    trade_every = max(1, -(-(streams["trade"] + streams["aggTrade"]) // max(1, streams["depth"])))
    seen: Counter = Counter()

    def kept(msg: Any) -> bool:
        kind = msg["stream"].split("@", 1)[1].split("@")[0]
        seen[kind] += 1
        if kind == "bookTicker":
            return seen[kind] % BOOK_TICKER_KEPT == 0
        if kind in ("trade", "aggTrade"):
            return seen[kind] % trade_every == 0
        return True
    return kept


def _binance_extras(venue: str, frames: List[Any]) -> List[Any]:
    """Documented Binance traffic the recordings lack: error and plain replies, a
    server shutdown notice, aggregate trades (COIN-M's default trade stream) and
    the markPrice events of futures (a COIN-M delivery contract's with no funding,
    ``"r": ""``)."""
    data = next(m["data"] for m in frames if m["data"].get("e") == "depthUpdate")
    symbol, when = data["s"], data["E"]
    stream = symbol.lower()
    out: List[Any] = [
        {"code": 2, "msg": "Invalid request: unknown variant", "id": 999_999},
        {"code": 1, "msg": "Too many requests", "id": None},
        {"result": None, "id": 424242},
        {"stream": f"{stream}@depth@100ms", "data": {"e": "serverShutdown", "E": when}},
        {"stream": f"{stream}@aggTrade", "data": {
            "e": "aggTrade", "E": when, "s": symbol, "a": 1, "p": "2682.18", "q": "3",
            "f": 1, "l": 2, "T": when, "m": False}},
    ]
    if venue != "binance":
        out.append({"stream": f"{stream}@markPrice@1s", "data": {
            "e": "markPriceUpdate", "E": when, "s": symbol, "p": "2682.1", "i": "2681.3",
            "P": "2683.0", "r": "0.00010000", "T": when + 3_600_000}})
    if venue == "binance_coinm":
        out.append({"stream": "ethusd_241227@markPrice@1s", "data": {
            "e": "markPriceUpdate", "E": when, "s": "ETHUSD_241227", "p": "2690.51",
            "i": "2681.3", "P": "2689.9", "r": "", "T": 0}})
    return out


def _deribit_trades(snapshot: Any) -> Any:
    """A ``trades.{instrument}.raw`` notification (the recordings follow none); the
    model numbers its trades."""
    data = snapshot["params"]["data"]
    inst = data["instrument_name"]
    price = data["asks"][0][1] if data["asks"] else 0.05
    return {"jsonrpc": "2.0", "method": "subscription", "params": {
        "channel": f"trades.{inst}.raw", "data": [
            {"trade_seq": 1, "trade_id": "1", "timestamp": data["timestamp"], "price": price,
             "amount": 2.0, "direction": side, "instrument_name": inst,
             "tick_direction": 0, "index_price": 2150.0, "mark_price": price}
            for side in ("buy", "sell")]}}


def _grouped(snapshot: Any, depth: int = 10) -> Any:
    """The grouped top-N notification of the same book (Deribit ``book.X.none.N.100ms``)."""
    data = snapshot["params"]["data"]
    inst = data["instrument_name"]
    return {"jsonrpc": "2.0", "method": "subscription", "params": {
        "channel": f"book.{inst}.none.{depth}.100ms",
        "data": {"timestamp": data["timestamp"], "instrument_name": inst,
                 "change_id": data["change_id"],
                 "bids": [[p, a] for _, p, a in data["bids"][:depth]],
                 "asks": [[p, a] for _, p, a in data["asks"][:depth]]}}}


# ------------------------------------------------------------------ model exchanges


class Model:
    """A venue's side of the connection: numbers the frames it sends and answers
    the feed's requests with the recorded replies and snapshots."""

    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        self.corpus = corpus
        self.rng = rng

    def stamp(self, msg: Any) -> Any:
        return msg

    def answer(self, sent: Any) -> List[Any]:
        raise NotImplementedError

    def restart(self) -> None:
        """A new connection."""

    def skip(self, frames: int) -> None:
        """``frames`` frames were lost on the way (the transport dropped them)."""

    #: Whether every trade the model sends has an id of its own (the recording's
    #: ids repeat each time it loops otherwise).
    renumbers_trades = False


class CoinbaseExchangeModel(Model):
    """Each (un)subscribe is answered with the recorded ``subscriptions`` reply,
    a subscribe also with the recorded snapshot of each of its products."""

    #: (field, value) that marks the venue's subscriptions reply.
    REPLY = ("type", "subscriptions")

    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        super().__init__(corpus, rng)
        field_name, value = self.REPLY
        self.reply = next(f for f in corpus.frames if f.get(field_name) == value)

    def answer(self, sent: Any) -> List[Any]:
        out = [self.reply]
        if sent.get("type") == "subscribe":
            out += [self.corpus.snapshots[p] for p in sent.get("product_ids", ())
                    if p in self.corpus.snapshots]
        return out


class CoinbaseModel(CoinbaseExchangeModel):
    """As Coinbase Exchange, and every frame numbered by the connection's counter."""

    REPLY = ("channel", "subscriptions")

    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        super().__init__(corpus, rng)
        self.seq = 0

    def stamp(self, msg: Any) -> Any:
        if "sequence_num" not in msg:
            return msg
        msg = dict(msg, sequence_num=self.seq)
        self.seq += 1
        return msg

    def restart(self) -> None:
        self.seq = 0

    def skip(self, frames: int) -> None:
        self.seq += frames


class DeribitModel(Model):
    """Per-instrument chains: a snapshot carries the chain's current id, each
    change the previous one and a new one; trades are numbered per instrument
    and timed by its latest book message."""

    renumbers_trades = True

    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        super().__init__(corpus, rng)
        self.change: Dict[str, int] = {}
        #: Trade numbers and the latest book time per instrument (for its trades).
        self.trades: Dict[str, int] = {}
        self.when: Dict[str, float] = {}

    def stamp(self, msg: Any) -> Any:
        params = msg.get("params")
        if msg.get("method") != "subscription":
            return msg
        if params["channel"].startswith("trades."):
            trades = []
            for trade in params["data"]:
                inst = trade["instrument_name"]
                seq = self.trades[inst] = self.trades.get(inst, 0) + 1
                trades.append(dict(trade, trade_seq=seq, trade_id=f"{inst}-{seq}",
                                   timestamp=self.when.get(inst, trade["timestamp"])))
            return {**msg, "params": {**params, "data": trades}}
        if not params["channel"].startswith("book."):
            return msg
        data = params["data"]
        inst = data["instrument_name"]
        self.when[inst] = data["timestamp"]
        last = self.change.setdefault(inst, data["change_id"])
        if "prev_change_id" in data:
            new = last + self.rng.choice((1, 1, 1, 2, 9))
            data = dict(data, prev_change_id=last, change_id=new)
        else:
            new = last + 1
            data = dict(data, change_id=new)
        self.change[inst] = new
        return {**msg, "params": {**params, "data": data}}

    def answer(self, sent: Any) -> List[Any]:
        method = sent.get("method")
        reply = {"jsonrpc": "2.0", "id": sent.get("id")}
        if method not in ("public/subscribe", "public/unsubscribe"):
            return [dict(reply, result="ok")]
        channels = sent["params"]["channels"]
        out = [dict(reply, result=channels)]
        if method == "public/subscribe":
            for ch in channels:
                parts = ch.split(".")
                snap = self.corpus.snapshots.get(parts[1])
                if snap is not None:
                    out.append(_grouped(snap, int(parts[3])) if len(parts) == 5 else snap)
        return out


class BinanceModel(Model):
    """Per-symbol update ids, trade ids and exchange times, consistent however the
    recording loops, and REST snapshots whose ``lastUpdateId`` fits them.

    Each diff follows on from the symbol's last id: ``U`` = last + 1, ``u`` = last
    + k (futures also ``pu`` = last). A snapshot is served at some frame after its
    request and carries the state then: spot ``lastUpdateId`` = the last ``u``
    sent (the next diff straddles it + 1), futures the next diff's ``U`` (the first
    applied must have ``U <= lastUpdateId <= u``). Some are older (a stale
    snapshot, fetched again) or fail (a ban, an HTTP error). Trades are numbered
    per symbol with a rare skip (a trade gap); times move on by the recording's
    span each time it loops, so bars keep closing."""

    renumbers_trades = True

    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        super().__init__(corpus, rng)
        self.futures = corpus.venue != "binance"
        #: The exchange's book per symbol, price -> (price text, size text): the
        #: recorded snapshot and every diff sent since, which a snapshot serves.
        self.books: Dict[str, Tuple[SortedDict, SortedDict]] = {}
        #: The last update id sent per symbol.
        self.last: Dict[str, int] = {}
        self.trades: Dict[str, int] = {}
        self.shift = 0.0
        self.clock = -math.inf
        #: Requests fail at once until this frame (a 418 ban).
        self.banned_until = -1
        #: The event type and symbol of the frame :meth:`stamp` numbered last.
        self.stamped: Optional[Tuple[Any, str]] = None

    def _time(self, data: Dict[str, Any]) -> Dict[str, Any]:
        when = data.get("E")
        if isinstance(when, (int, float)):
            if abs(when + self.shift - self.clock) > 5_000.0 and self.clock > 0:
                # The recording looped (or the next one began): time goes on from here.
                self.shift = self.clock + 100.0 - when
            self.clock = max(self.clock, when + self.shift)
        shift = self.shift
        return {k: v + shift if k in ("E", "T") and isinstance(v, (int, float)) and v else v
                for k, v in data.items()}

    def stamp(self, msg: Any) -> Any:
        self.stamped = None
        data = msg.get("data")
        if not isinstance(data, dict) or "s" not in data:
            return msg
        data = self._time(data)
        kind, symbol = data.get("e"), data["s"]
        self.stamped = (kind, symbol)
        rng = self.rng
        if kind == "depthUpdate":
            last = self.last.setdefault(symbol, data["U"] - 1)
            new = last + rng.choice((1, 1, 2, 5, 40))
            data["U"], data["u"] = last + 1, new
            if self.futures:
                data["pu"] = last
            self.last[symbol] = new
            if symbol in self.corpus.snapshots:
                data["b"], data["a"] = self._apply(symbol, data["b"], data["a"])
        elif kind in ("trade", "aggTrade"):
            tid = self.trades.get(symbol, 1000) + (1 if rng.random() < 0.995 else 3)
            self.trades[symbol] = tid
            if kind == "trade":
                data["t"] = tid
            else:
                data["a"] = tid
                data["f"], data["l"] = 10 * tid, 10 * tid + rng.choice((0, 0, 2))
        return {**msg, "data": data}

    def _book(self, symbol: str) -> Tuple[SortedDict, SortedDict]:
        book = self.books.get(symbol)
        if book is None:
            snapshot = self.corpus.snapshots[symbol]
            book = self.books[symbol] = tuple(  # type: ignore[assignment]
                SortedDict({float(p): (p, q) for p, q in snapshot[side]})
                for side in ("bids", "asks"))
        return book  # type: ignore[return-value]

    def _apply(self, symbol: str, bids: List[Any], asks: List[Any]) -> Tuple[List, List]:
        """Apply a diff to the exchange's book. The recording's diffs, looped, do not
        always fit the book they meet: a level the diff does not name that it
        crosses is deleted, in the diff too, so that the exchange's book and every
        client's stay uncrossed, and alike."""
        book_bids, book_asks = self._book(symbol)
        bids, asks = list(bids), list(asks)
        for side, levels in ((book_bids, bids), (book_asks, asks)):
            for p, q in levels:
                if float(q) == 0.0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = (p, q)
        named = {float(p) for p, _ in bids}, {float(p) for p, _ in asks}
        while book_bids and book_asks and book_bids.peekitem(-1)[0] >= book_asks.peekitem(0)[0]:
            bid, ask = book_bids.peekitem(-1)[0], book_asks.peekitem(0)[0]
            if ask in named[1] and bid not in named[0]:
                bids.append([book_bids.pop(bid)[0], "0"])
            else:
                asks.append([book_asks.pop(ask)[0], "0"])
        return bids, asks

    def answer(self, sent: Any) -> List[Any]:
        return [{"result": None, "id": sent.get("id")}]

    def skip(self, frames: int) -> None:
        for symbol in self.last:
            self.last[symbol] += frames

    def serve(self, product: str, index: int) -> Optional[bytes]:
        """The REST depth reply for ``product`` as served now (None: the request
        fails, as for a ban, an unknown symbol or an HTTP error)."""
        rng = self.rng
        snapshot = self.corpus.snapshots.get(product)
        if snapshot is None or index < self.banned_until or rng.random() < 0.03:
            return None
        last = self.last.get(product, snapshot["lastUpdateId"])
        choice = rng.random()
        if choice < 0.1:
            last -= rng.choice((1, 30, 10**6))  # older than diffs already sent: stale
        elif self.futures:
            last += 1  # inside the next diff's [U, u]
        bids, asks = self._book(product)
        body = dict(snapshot, lastUpdateId=max(last, 0),
                    bids=[bids.peekitem(-1 - i)[1] for i in range(min(SNAPSHOT_LEVELS,
                                                                      len(bids)))],
                    asks=[asks.peekitem(i)[1] for i in range(min(SNAPSHOT_LEVELS, len(asks)))])
        for key in ("E", "T"):
            if key in body:
                body[key] = self.clock if self.clock > 0 else body[key]
        return orjson.dumps(body)


MODELS: Dict[str, Callable[[Corpus, random.Random], Model]] = {
    "coinbase": CoinbaseModel, "coinbase_exchange": CoinbaseExchangeModel,
    "deribit": DeribitModel, "binance": BinanceModel, "binance_usdm": BinanceModel,
    "binance_coinm": BinanceModel}

# ------------------------------------------------------------------ mutations

#: Number tokens written into the JSON text as they are (some are not JSON at all).
NUMBER_TOKENS = (
    b"0", b"-0", b"-1", b"0.0", b"-0.0", b"1e308", b"-1e308", b"1e309", b"1e400", b"-1e400",
    b"5e-324", b"1e-400", b"2.2e-308", b"9223372036854775807", b"9223372036854775808",
    b"18446744073709551615", b"18446744073709551616", b"1000000000000000000",
    b"-9223372036854775809", b"1" * 400, b"NaN", b"nan", b"Infinity", b"-Infinity",
    b"1.0e+", b"01", b"1.", b".5", b"+1", b"0x10", b"1e5", b"1000000000001", b"4102444800001",
    b"946684799999", b"1E2", b"-",
)
#: Numbers as text, for venues that quote them in strings.
NUMERIC_TEXT = (
    "NaN", "nan", "inf", "-inf", "Infinity", "1e308", "1e309", "-1", "0", "-0", "0.0", "1_00",
    "١٠٠", " 12 ", "12 ", "\t12", "+1", ".5", "5.", "0x10", "1e-400", "", "1,5", "１２", "1e5",
    "9223372036854775808", "²", "5e-324", "1000000000001", "00012", "1e",
)
ODD_STRINGS = (
    "\n", "BTC-USD\n2026-12-01 21:00:00,000 ERROR lobstream.feed: forged", "\r\x1b[2J\x1b[31m",
    "\u2028", "\u0085", "\x00", "BTC/USD", "..", "../../etc/passwd", "x" * 300, "é", "\U0001f600",
    "l2_data", "snapshot", "update", "heartbeats", "subscriptions", "subscription", "heartbeat",
    "test_request", "l2update", "error", "bid", "offer", "ask", "buy", "sell", "new", "change",
    "delete", "book.BTC-PERPETUAL.100ms", "book.BTC-PERPETUAL.none.².100ms",
    "book.BTC-PERPETUAL.none.99999999999999999999.100ms", "book.", "book..", "book.x.none.10.a",
    "ticker", "BTC-USD", "ETH-USD", "SKL-USD", "BTC-PERPETUAL", "1970-01-01T00:00:00Z",
    "2026-08-09T21:05:48.505350477Z", "2026-08-09T21:05:48", "9999-12-31T23:59:59Z",
    "2026-13-45T99:99:99Z", "public/subscribe",
)
ODD_VALUES: Tuple[Any, ...] = (None, True, False, [], {}, "", "x", 0, -1, 1.5, [[]], {"": None},
                               [None, None, None], ["new", 1.0, 1.0], ["bid", "1", "1"])
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80",
            b"\xe2\x82", b"\xef\xbb\xbf")
NEST_DEPTHS = (1, 2, 30, 500, 990, 995, 996, 1000, 1020, 1023, 1024, 1025, 1100, 3000)
SEQ_KEYS = ("sequence_num", "change_id", "prev_change_id", "id", "sequence", "timestamp",
            "lastUpdateId", "U", "u", "pu", "t", "a", "f", "l", "E", "T")
SEQ_VALUES = (0, 1, -1, 2**31, 2**40, 2**40 + 1, 2**53 + 1, 10**18, 2**63 - 1, 2**63, 2**64 - 1,
              2**64, 10**30)
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


class Doc:
    """A decoded frame being mutated. Values that JSON cannot hold (bare tokens,
    duplicate keys, nests deeper than the encoder allows) are planted as unique
    sentinel strings and spliced into the encoded bytes."""

    def __init__(self, value: Any) -> None:
        self.box = [value]
        self._splices: List[Tuple[bytes, bytes]] = []

    def sentinel(self, token: bytes) -> str:
        mark = f"\x00fz{len(self._splices)}\x00"
        self._splices.append((orjson.dumps(mark), token))
        return mark

    def encode(self) -> bytes:
        raw = orjson.dumps(self.box[0])
        for mark, token in self._splices:
            raw = raw.replace(mark, token)
        return raw

    def pick(self, rng: random.Random, stop: float = 0.3) -> Tuple[Any, Any]:
        """A random place in the document: ``(container, key)``."""
        parent: Any = self.box
        key: Any = 0
        node = self.box[0]
        while True:
            if isinstance(node, dict) and node:
                child = rng.choice(list(node))
            elif isinstance(node, list) and node:
                child = rng.randrange(len(node))
            else:
                return parent, key
            if parent is not self.box and rng.random() < stop:
                return parent, key
            parent, key, node = node, child, node[child]

    def find(self, names: Tuple[str, ...], limit: int = 4) -> List[Tuple[Any, Any]]:
        """Places of keys called ``names`` in the first ``limit`` levels of objects."""
        found: List[Tuple[Any, Any]] = []
        stack: List[Tuple[Any, int]] = [(self.box[0], 0)]
        while stack:
            node, depth = stack.pop()
            if depth >= limit:
                continue
            if isinstance(node, dict):
                for k, v in node.items():
                    if k in names:
                        found.append((node, k))
                    if isinstance(v, (dict, list)):
                        stack.append((v, depth + 1))
            elif isinstance(node, list):
                stack.extend((v, depth + 1) for v in node[:4] if isinstance(v, (dict, list)))
        return found


def _swap_type(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng)
    other_parent, other_key = doc.pick(rng)
    parent[key] = rng.choice(ODD_VALUES + (other_parent[other_key],))


def _delete(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng)
    if parent is not doc.box:
        del parent[key]


def _number(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng, stop=0.15)
    choice = rng.random()
    if choice < 0.5:
        parent[key] = doc.sentinel(rng.choice(NUMBER_TOKENS))
    elif choice < 0.8:
        parent[key] = rng.choice(NUMERIC_TEXT)
    else:
        parent[key] = rng.choice((True, False, None, [1], {"v": 1}))


def _odd_string(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng, stop=0.15)
    parent[key] = rng.choice(ODD_STRINGS)


def _deepen(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng)
    depth = rng.choice(NEST_DEPTHS)
    inner = orjson.dumps(parent[key])
    if rng.random() < 0.5:
        token = b"[" * depth + inner + b"]" * depth
    else:
        token = b'{"a":' * depth + inner + b"}" * depth
    parent[key] = doc.sentinel(token)


def _rename_key(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng)
    if not isinstance(parent, dict):
        return
    others = [k for k in parent if k != key]
    new = rng.choice([key + "_", key.upper(), "", key[:-1], " " + key] + others)
    value = parent.pop(key)
    parent[new] = value


def _duplicate_key(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng)
    if not isinstance(parent, dict):
        return
    other = rng.choice(ODD_VALUES + (parent[key],))
    mark = doc.sentinel(orjson.dumps(key))
    if rng.random() < 0.5:
        parent[mark] = other  # the duplicate comes last: the one a decoder keeps, if any
    else:
        items = list(parent.items())
        parent.clear()
        parent[mark] = other
        parent.update(items)


def _list_op(doc: Doc, rng: random.Random) -> None:
    parent, key = doc.pick(rng, stop=0.5)
    node = parent[key]
    if not isinstance(node, list):
        node = parent if isinstance(parent, list) and parent is not doc.box else None
    if node is None:
        return
    choice = rng.randrange(6)
    if choice == 0 and node:
        node.insert(rng.randrange(len(node)), rng.choice(node))
    elif choice == 1:
        node.append(rng.choice(ODD_VALUES))
    elif choice == 2:
        node.reverse()
    elif choice == 3:
        node.clear()
    elif choice == 4 and node:
        node.extend([node[0]] * rng.choice((10, 1000, 5000)))
    elif node:
        node.pop(rng.randrange(len(node)))


def _sequence(doc: Doc, rng: random.Random) -> None:
    places = doc.find(SEQ_KEYS)
    if not places:
        return
    parent, key = rng.choice(places)
    value = parent[key]
    if isinstance(value, int) and not isinstance(value, bool) and rng.random() < 0.6:
        parent[key] = value + rng.choice((-2, -1, 0, 1, 2, 64, 1000, 2**40, -(2**40)))
    elif rng.random() < 0.8:
        value = rng.choice(SEQ_VALUES)
        parent[key] = value if -(2**63) <= value < 2**64 else doc.sentinel(str(value).encode())
    else:
        text = str(value) if isinstance(value, int) else "1"  # never str() a deep nest
        parent[key] = rng.choice((text, None, 1.5, True, [value]))


STRUCTURAL = (_swap_type, _delete, _number, _odd_string, _deepen, _rename_key, _duplicate_key,
              _list_op, _sequence, _sequence)


def _number_bytes(raw: bytes, rng: random.Random) -> bytes:
    """A number in the text (also one quoted in a string) made extreme or odd."""
    spans = [m.span() for _, m in zip(range(200), _NUMBER.finditer(raw))]
    if not spans:
        return raw
    a, b = rng.choice(spans)
    token = rng.choice(NUMBER_TOKENS + tuple(t.encode() for t in NUMERIC_TEXT if '"' not in t))
    return raw[:a] + token + raw[b:]


def _truncate(raw: bytes, rng: random.Random) -> bytes:
    return raw[:rng.randrange(len(raw))] if raw else raw


def _bad_utf8(raw: bytes, rng: random.Random) -> bytes:
    quotes = [i for i in range(min(len(raw), 4000)) if raw[i] == 34]
    at = rng.choice(quotes) + 1 if quotes and rng.random() < 0.7 else rng.randrange(len(raw) + 1)
    return raw[:at] + rng.choice(BAD_UTF8) + raw[at:]


def _flip(raw: bytes, rng: random.Random) -> bytes:
    if not raw:
        return raw
    at = rng.randrange(len(raw))
    return raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1:]


def _cut(raw: bytes, rng: random.Random) -> bytes:
    a = rng.randrange(len(raw) + 1)
    b = min(len(raw), a + rng.choice((1, 2, 8, 64)))
    return raw[:a] + raw[b:] if rng.random() < 0.5 else raw[:b] + raw[a:b] + raw[b:]


def _replace_whole(raw: bytes, rng: random.Random) -> bytes:
    return rng.choice((b"", b" ", b"\n", b"null", b"0", b"[]", b'"x"', b"[" * 2000, b"{}",
                       b"\xef\xbb\xbf" + raw, raw + b"x", raw + raw, b"{" + raw, raw + b" \t\n"))


BYTES = (_number_bytes, _number_bytes, _truncate, _bad_utf8, _flip, _cut, _replace_whole)


def mutate(raw: bytes, rng: random.Random) -> Tuple[bytes, List[str]]:
    """One to three mutations of ``raw``, and their names."""
    names: List[str] = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = None
        op: Callable[..., Any] = rng.choice(STRUCTURAL)
        try:
            if value is None or rng.random() < 0.3:
                raise TypeError("a byte-level mutation")
            doc = Doc(value)
            op(doc, rng)
            raw = doc.encode()
        except (TypeError, RecursionError):  # also: a nest deeper than orjson encodes
            op = rng.choice(BYTES)
            raw = op(raw, rng)
        names.append(op.__name__.lstrip("_"))
    return raw, names


# ------------------------------------------------------------------ invariants

#: What happened to a delivered frame that was not a mutation of its bytes.
STREAM_OPS = ("repeated", "reordered")


class Violation(AssertionError):
    pass


def _identity(raw: bytes) -> Tuple[Any, Any]:
    """What a frame says it is, ``(type, products)``: its type (channel; method and
    channel) and the products it names, each None where it cannot be read."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(msg, dict):
        return None, None
    if "params" in msg or "method" in msg:  # Deribit
        params = msg.get("params")
        params = params if isinstance(params, dict) else {}
        data = params.get("data")
        kind: Any = (msg.get("method"), params.get("channel"))
        names: Any = (data.get("instrument_name") if isinstance(data, dict) else None,)
    elif "stream" in msg or "data" in msg:  # Binance
        data = msg.get("data")
        data = data if isinstance(data, dict) else {}
        kind, names = (data.get("e"),), (data.get("s"),)
    elif "channel" in msg:  # Coinbase Advanced Trade
        kind = (msg["channel"],)
        events = msg.get("events")
        names = tuple(e.get("product_id") if isinstance(e, dict) else None
                      for e in events) if isinstance(events, list) else (None,)
    else:  # Coinbase Exchange
        kind, names = (msg.get("type"),), (msg.get("product_id"),)
    return (kind if all(isinstance(k, str) for k in kind) else None,
            names if all(isinstance(n, str) for n in names) else None)


def _still_names(original: bytes, mutated: bytes) -> bool:
    """Whether the mutated frame may still be the original's book message: its type
    and products are the same, or cannot be read. Renamed into another message (a
    type or product of its own), the original's update is gone as if never sent,
    which nothing can tell."""
    kind, names = _identity(mutated)
    if kind is None:
        return True
    old_kind, old_names = _identity(original)
    return kind == old_kind and (names is None or names == old_names)


def _check_level(level: Any, where: str) -> None:
    price, size = level
    if type(price) is not float or type(size) is not float:
        raise Violation(f"{where}: level {level!r} is not a pair of floats")
    if not 0.0 < price <= MAX_PRICE:
        raise Violation(f"{where}: price {price!r} outside (0, {MAX_PRICE:g}]")
    if not 0.0 <= size <= MAX_SIZE:
        raise Violation(f"{where}: size {size!r} outside [0, {MAX_SIZE:g}]")


_FIGURES = ("bid_px", "bid_sz", "ask_px", "ask_sz", "spread", "spread_bps", "mid", "microprice",
            "imbalance", "depth_imbalance", "ofi")


def _check_summary(rec: Dict[str, Any]) -> None:
    for name in _FIGURES:
        value = rec[name]
        if value is not None and (not isinstance(value, float) or not math.isfinite(value)):
            raise Violation(f"summary {name} = {value!r}")
    bid, ask = rec["bid_px"], rec["ask_px"]
    if bid is None or ask is None:
        if any(rec[n] is not None for n in ("mid", "microprice", "depth_imbalance")):
            raise Violation("two-sided figures of a one-sided book")
        return
    if not bid < ask:
        raise Violation(f"summary crossed or locked: bid {bid} ask {ask}")
    if not (rec["bid_sz"] > 0.0 and rec["ask_sz"] > 0.0):
        raise Violation(f"summary top size not positive: {rec['bid_sz']} {rec['ask_sz']}")
    for name in ("mid", "microprice", "depth_imbalance", "spread_bps"):
        if rec[name] is None:
            raise Violation(f"summary {name} is null on a two-sided book")
    if not bid <= rec["mid"] <= ask or not bid <= rec["microprice"] <= ask:
        raise Violation(f"mid {rec['mid']} or microprice {rec['microprice']} outside "
                        f"[{bid}, {ask}]")
    if not -1.0 <= rec["imbalance"] <= 1.0 or not -1.0 <= rec["depth_imbalance"] <= 1.0:
        raise Violation(f"imbalance {rec['imbalance']} / {rec['depth_imbalance']} outside [-1, 1]")


#: Bar fields that hold numbers (or None where a bar has no value for them).
_BAR_NUMBERS = tuple(name for name in BAR_FIELDS if name not in (
    "type", "venue", "product", "complete", "source"))


def _check_bar(rec: Dict[str, Any]) -> None:
    """A bar: every number finite, low <= open, close <= high, volumes that add
    up, a trade behind any volume, a window that ends after it starts."""
    for name in _BAR_NUMBERS:
        value = rec[name]
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            raise Violation(f"bar {name} = {value!r}: {rec}")
    if not rec["start"] < rec["end"]:
        raise Violation(f"bar window [{rec['start']}, {rec['end']})")
    o, h, l, c = rec["open"], rec["high"], rec["low"], rec["close"]  # noqa: E741
    if o is not None and not (l <= o <= h and l <= c <= h):
        raise Violation(f"bar open {o} high {h} low {l} close {c}")
    volume = rec["volume"]
    for name in ("volume", "buy_volume", "sell_volume", "quote_volume", "buy_quote_volume",
                 "sell_quote_volume"):
        if not rec[name] >= -1e-9 * max(1.0, volume, rec["quote_volume"]):
            raise Violation(f"bar {name} = {rec[name]!r}: {rec}")
    if not math.isclose(rec["buy_volume"] + rec["sell_volume"], volume, rel_tol=1e-9,
                        abs_tol=1e-12):
        raise Violation(f"bar buy {rec['buy_volume']} + sell {rec['sell_volume']} volume "
                        f"!= {volume}")
    if rec["buy_trades"] + rec["sell_trades"] != rec["trades"] or min(
            rec["buy_trades"], rec["sell_trades"]) < 0:
        raise Violation(f"bar trades {rec['trades']} = {rec['buy_trades']} buys + "
                        f"{rec['sell_trades']} sells")
    if volume > 0.0 and rec["trades"] < 1:
        raise Violation(f"bar volume {volume} without a trade")
    vwap = rec["vwap"]
    if vwap is not None and not l * (1 - 1e-9) <= vwap <= h * (1 + 1e-9):
        raise Violation(f"bar vwap {vwap} outside [{l}, {h}]")


def _check_book(key: str, state: ProductState) -> None:
    for side in (state.book.bids, state.book.asks):
        for price, size in side.items():
            if not 0.0 < price <= MAX_PRICE or not 0.0 < size <= MAX_SIZE:
                raise Violation(f"{key}: book holds level ({price!r}, {size!r})")
    if state.valid and state.book.bids and state.book.asks \
            and not state.book.bids.peekitem(-1)[0] < state.book.asks.peekitem(0)[0]:
        raise Violation(f"{key}: a valid book is crossed or locked")


# ------------------------------------------------------------------ sessions


@dataclass
class Stats:
    frames: int = 0
    mutated: int = 0
    sessions: int = 0
    counts: Counter = field(default_factory=Counter)


#: The share of a session's frames that is mutated: each venue's sessions take
#: these in turn (from a random start), so that a short run still sees them all.
RATES = (0.0, 0.02, 0.1, 0.3, 0.6, 1.0)


class Session:
    """One feed and its books, fed by one venue's model exchange."""

    def __init__(self, corpus: Corpus, rng: random.Random, frames: int, stats: Stats) -> None:
        venue = get_venue(corpus.venue)
        self.corpus = corpus
        self.rng = rng
        self.frames = frames
        self.stats = stats
        self.model = MODELS[corpus.venue](corpus, rng)
        self.rate = RATES[stats.sessions % len(RATES)]
        stats.sessions += 1
        self.fixed = fixed = rng.random() < 0.5
        settings = {"depth": 10} if corpus.venue == "deribit" and rng.random() < 0.2 else {}
        self.settings = settings
        # Half the sessions build bars, as the flow does (state.bars), with the
        # connection clock that closes a quiet product's bars.
        self.bars: Optional[BarSpec] = None
        clock_ms = 0.0
        if rng.random() < 0.5:
            intervals = rng.choice(((1000,), (1000, 60_000), (5000,), (60_000,)))
            self.bars = BarSpec(intervals, rng.choice((0.0, 500.0, 2000.0)),
                                rng.choice((0.0, 5000.0, 60_000.0)), rng.random() < 0.3)
            clock_ms = float(min((1000,) + intervals))
        self.bad = BadInput()
        self.feed = Feed(venue, list(corpus.snapshots) if fixed else None, self.bad,
                         settings=settings, errors=ErrorReplies(), clock_ms=clock_ms)
        self.rest = venue.rest_snapshots
        #: REST snapshot requests in flight: (due frame, order, stage "serve" or
        #: "reply", product, url, body, connection, whether the feed asked for it).
        self.rest_queue: List[Tuple[int, int, str, str, str, Optional[bytes], int, bool]] = []
        self.rest_order = 0
        #: Per product, the connection on which the snapshot it requested is outstanding
        #: (at most one, whichever connection asked: replies outlive connections).
        self.outstanding: Dict[str, int] = {}
        #: Products whose last snapshot request failed, or whose reply was rejected:
        #: the next request must come from the feed's timer (or a new invalidation).
        self.failed: set = set()
        self.connection = 0
        #: Per key, the update id the book reached since its last invalidation
        #: (a REST snapshot older than it must not replace it).
        self.reached: Dict[str, Optional[int]] = {}
        #: Per key, genuine diffs dropped in a row from a synced book, and genuine
        #: trades not counted in a row (a frozen book or trade count).
        self.frozen: Counter = Counter()
        self.uncounted: Counter = Counter()
        #: Trade ids counted per key (each at most once), and how many were.
        self.trade_ids: Dict[str, set] = {}
        self.counted: Dict[str, int] = {}
        self.states: Dict[str, ProductState] = {}
        #: Whether the feed may pass updates for a key (a snapshot since its last invalid status).
        self.feed_ok: Dict[str, bool] = {}
        #: Keys whose book missed an update (a rejected frame) and was not resynced yet:
        #: the rejected frame, its mutations and its place in the book's chain (if any).
        self.lost: Dict[str, Optional[Tuple[bytes, List[str], Optional[int]]]] = {}
        #: Whether a summary may come from a key's book (rebuilt since its last invalidation).
        self.book_ok: Dict[str, bool] = {}
        #: The model's answers in the order sent, each with the frame index it is due at.
        self.pending: Deque[Tuple[int, Any]] = deque()
        self.held: Optional[bytes] = None
        #: The frame being delivered and its mutations, for the failure message.
        self.frame: Tuple[bytes, List[str]] = (b"", [])
        self.ts = T0_MS
        self.position = rng.randrange(len(corpus.frames))
        self.delivered = 0
        self.bad_total = 0
        self.index = 0
        if fixed:
            self._answer(self.feed.connected(self.ts))
        elif not self.rest:  # a replay: the capture starts with the books' snapshots
            self.pending.extend((0, snap) for snap in corpus.snapshots.values())
        #: (Binance replays: the REST replies the capture recorded come after each
        #: product's first diff.)
        self.seen: set = set()

    # -- the model exchange's side
    def _answer(self, sent: List[Any]) -> None:
        for message in sent:
            delay = self.rng.choice((0, 0, 1, 3, 20, 200))
            for reply in self.model.answer(message):
                self.pending.append((self.index + delay, reply))
        if len(self.pending) > 10_000:
            raise Violation(f"the feed asked for {len(self.pending)} answers: a request storm")

    def _next_message(self) -> Any:
        rng = self.rng
        if self.pending and self.pending[0][0] <= self.index:
            return self.pending.popleft()[1]
        if rng.random() < 0.01:
            return rng.choice(self.corpus.extras)
        frames = self.corpus.frames
        msg = frames[self.position % len(frames)]
        self.position += 1
        if self.position % len(frames) == 0 and not self.model.renumbers_trades:
            self.trade_ids.clear()  # the recording's trade ids come round again
        return msg

    # -- REST snapshots (Binance), driven from Feed.requests as the websocket source does
    def _fetch(self, timer: bool) -> None:
        """Take the feed's snapshot requests; ``timer``: right after its tick."""
        venue = self.feed.venue
        for product in self.feed.requests:
            if product in self.outstanding:
                raise Violation(f"{product}: a second snapshot request while one is "
                                f"outstanding")
            if product in self.failed and not timer:
                raise Violation(f"{product}: a failed snapshot request was sent again before "
                                f"the feed's retry timer")
            self.failed.discard(product)
            self.outstanding[product] = self.connection
            self.stats.counts["rest_requests"] += 1
            assert venue.snapshot_request is not None
            url = venue.snapshot_request(venue.rest_url, product, self.settings)[0]
            self._serve_later(product, url, True)
        self.feed.requests = []
        if self.stats.counts["rest_requests"] > self.stats.frames // 2 + 1000:
            raise Violation(f"{self.stats.counts['rest_requests']} snapshot requests: a storm")

    def _serve_later(self, product: str, url: str, asked: bool) -> None:
        self.rest_order += 1
        heapq.heappush(self.rest_queue, (self.index + self.rng.choice((0, 1, 3, 10, 40, 150)),
                                         self.rest_order, "serve", product, url, None,
                                         self.connection, asked))

    def _rest_due(self) -> None:
        rng = self.rng
        while self.rest_queue and self.rest_queue[0][0] <= self.index:
            _, _, stage, product, url, body, conn, asked = heapq.heappop(self.rest_queue)
            if stage == "serve":  # the exchange reads its book now; the reply is on its way
                body = self.model.serve(product, self.index)  # type: ignore[attr-defined]
                self.rest_order += 1
                heapq.heappush(self.rest_queue, (self.index + rng.choice((0, 1, 2, 10)),
                                                 self.rest_order, "reply", product, url, body,
                                                 conn, asked))
            else:
                self._rest_reply(product, url, body, conn, asked)

    def _failed(self, product: str, conn: int) -> None:
        """A snapshot request failed: the next must wait for the timer, unless the
        book has no diff since it was lost (its first diff asks, as after a
        reconnect) or the request was the previous connection's."""
        state = self.feed.books.get(product)
        if conn == self.connection and state is not None and state.buffer:
            self.failed.add(product)

    def _rest_reply(self, product: str, url: str, body: Optional[bytes], conn: int,
                    asked: bool) -> None:
        rng = self.rng
        if asked:
            del self.outstanding[product]
        elif product in self.outstanding:
            return  # a replay's reply, superseded by the one the feed asked for
        counts = self.stats.counts
        if body is None:
            self.feed.rest_failed(product, self.ts)
            counts["rest_failures"] += 1
            self._failed(product, conn)
            return
        names: List[str] = []
        if self.rate and rng.random() < self.rate:
            body, names = mutate(body, rng)  # a REST reply is untrusted input too
            counts["rest_mutated"] += 1
        self.frame = (body, names)
        out: List[Keyed] = []
        # A reply came: what it leads to (a stale one is fetched again at once) is
        # the feed's to decide, whatever the last request's fate was.
        self.failed.discard(product)
        try:
            self.feed.on_rest(url, body, self.ts, out)
        except Exception as ex:
            raise Violation(f"{type(ex).__name__} escaped Feed.on_rest: {ex}") from ex
        counts["rest_replies"] += 1
        bad = sum(self.bad.counts.values())
        if not self.bad_total <= bad <= self.bad_total + 1:
            raise Violation(f"one REST reply counted as bad input {bad - self.bad_total} times")
        counts["bad"] += bad - self.bad_total
        rejected = bad > self.bad_total
        self.bad_total = bad
        self._process(out, body, names)
        if rejected:
            self._failed(product, conn)
        if self.feed.requests:
            self._fetch(timer=False)

    # -- the run
    def run(self) -> None:
        rng = self.rng
        for self.index in range(self.frames):
            if self.rest:
                self._rest_due()
                if rng.random() < 0.0002:  # a ban: every request fails at once for a while
                    self.model.banned_until = self.index + rng.choice((100, 1000))  # type: ignore[attr-defined]
            msg = self.model.stamp(self._next_message())
            raw = orjson.dumps(msg)
            names: List[str] = []
            carried: List[BookEvent] = []
            if self.rate and rng.random() < self.rate:
                if rng.random() < 0.15:
                    self._stream_op(raw, rng)
                    continue
                carried = self._carried(raw)
                original = raw
                raw, names = mutate(raw, rng)
                if carried and not _still_names(original, raw):
                    carried = []
                self.stats.mutated += 1
            self._deliver(raw, names, carried)
            if self.held is not None and rng.random() < 0.5:
                held, self.held = self.held, None
                self._deliver(held, ["reordered"])
            if self.index % 64 == 0:
                self.feed.tick(self.ts)
                self._answer(self._drain())
                if self.feed.requests:
                    self._fetch(timer=True)
            if self.index % BOOK_CHECK_EVERY == 0:
                for key, state in self.states.items():
                    _check_book(key, state)
            if rng.random() < 0.0005:
                self._reconnect()
        self._finish()

    def _stream_op(self, raw: bytes, rng: random.Random) -> None:
        choice = rng.randrange(4)
        if choice == 0:
            self.stats.counts["dropped"] += 1  # lost on the way: never delivered
        elif choice == 1:
            self._deliver(raw, ["repeated"])
            self._deliver(raw, ["repeated"])
        elif choice == 2 and self.held is None:
            self.held = raw
        else:
            out: List[Keyed] = []
            lost = rng.choice((1, 10, 1000))
            self.model.skip(lost)
            self.feed.overflow(self.ts, lost, out)
            self._process(out, b"<overflow>", ["overflow"])
            if self.feed.requests:
                self._fetch(timer=False)

    def _reconnect(self) -> None:
        out = self.feed.disconnected(self.ts, "fuzz")
        self._process(out, b"<disconnect>", ["disconnect"])
        self.pending.clear()
        self.model.restart()
        # The requests made on the old connection go out (the websocket source sends
        # them at the end of its batch); the replies in flight still come.
        if self.feed.requests:
            self._fetch(timer=False)
        self.connection += 1
        self.failed.clear()
        self._answer(self.feed.connected(self.ts))
        self.stats.counts["reconnects"] += 1

    def _drain(self) -> List[Any]:
        sent = self.feed.outbox
        self.feed.outbox = []
        return sent

    def _carried(self, raw: bytes) -> List[BookEvent]:
        """The book events of the frame ``raw``."""
        try:
            parsed = self.feed.venue.parse(raw, self.ts)
        except FrameError:
            return []
        return [ev for ev in parsed.events if isinstance(ev, BookEvent)]

    def _deliver(self, raw: bytes, names: List[str], carried: List[BookEvent] = ()) -> None:
        self.ts += TS_STEP_MS
        out: List[Keyed] = []
        self.frame = (raw, names)
        feed = self.feed
        dropped = feed.counts["duplicates"] + feed.counts["dropped_stale"]
        try:
            feed.on_frame(raw, self.ts, out)
        except Exception as ex:
            raise Violation(f"{type(ex).__name__} escaped Feed.on_frame: {ex}") from ex
        dropped = feed.counts["duplicates"] + feed.counts["dropped_stale"] > dropped
        self.delivered += 1
        self.stats.frames += 1
        if self.feed.counts["frames"] != self.delivered:
            raise Violation(f"frames counted {self.feed.counts['frames']}, delivered "
                            f"{self.delivered}")
        bad = sum(self.bad.counts.values())
        if not self.bad_total <= bad <= self.bad_total + 1:
            raise Violation(f"one frame counted as bad input {bad - self.bad_total} times")
        self.stats.counts["bad"] += bad - self.bad_total
        if bad > self.bad_total:
            # The frame was rejected: the books it would have changed missed an update.
            chained = self.feed.venue.book_chain is not None
            for ev in carried:
                state = self.feed.books.get(ev.product)
                if state is None or not state.sync.synced:
                    continue
                if chained and state.sync.last is not None and ev.seq <= state.sync.last:
                    continue  # a mutated id already took the book past it: no loss to see
                self.lost[state.key] = (raw, names, ev.seq if chained else None)
        self.bad_total = bad
        self._process(out, raw, names)
        stamped = getattr(self.model, "stamped", None)
        if stamped is not None and not names:
            self._liveness(stamped, out, dropped)
        if feed.outbox:
            self._answer(self._drain())
        if feed.reconnect:  # the server announced a shutdown
            feed.reconnect = False
            self._reconnect()
        if self.rest and not self.fixed and len(feed.books) > len(self.seen):
            for product in set(feed.books) - self.seen:
                self.seen.add(product)
                assert feed.venue.snapshot_request is not None
                self._serve_later(product, feed.venue.snapshot_request(
                    feed.venue.rest_url, product, self.settings)[0], False)
        if feed.requests:
            self._fetch(timer=False)

    def _liveness(self, stamped: Tuple[Any, str], out: List[Keyed], dropped: bool) -> None:
        """A genuine diff (ids the model never sent before) dropped from a synced
        book, or a genuine trade not counted, ``LIVENESS`` times in a row: a single
        forged number froze the book or the trade count."""
        kind, product = stamped
        key = self.feed._key(product)
        if kind == "depthUpdate":
            if any(type(item) is BookEvent for _, item in out):
                self.frozen[key] = 0
            elif dropped:
                self.frozen[key] += 1
                if self.frozen[key] > LIVENESS:
                    raise Violation(f"{key}: {self.frozen[key]} diffs in a row dropped from a "
                                    f"synced book (frozen)")
        elif kind in ("trade", "aggTrade") and any(type(item) is Trade for _, item in out):
            state = self.states[key]
            if state.counts["trades"] > self.counted.get(key, 0):
                self.uncounted[key] = 0
            else:
                self.uncounted[key] += 1
                if self.uncounted[key] > LIVENESS:
                    raise Violation(f"{key}: {self.uncounted[key]} trades in a row not counted "
                                    f"(frozen)")
            self.counted[key] = state.counts["trades"]

    def _process(self, out: List[Keyed], raw: bytes, names: List[str]) -> None:
        counts = self.stats.counts
        feed = self.feed
        forged = any(name not in STREAM_OPS for name in names)
        #: Keys this step resynced (a crossed book) while the rest of ``out`` was
        #: already on its way: a REST snapshot's buffered diffs follow it in one batch.
        cut: set = set()
        for key, item in out:
            if isinstance(item, BookEvent):
                self._check_event(key, item, key in cut)
                if self.rest and item.seq is not None:
                    reached = self.reached.get(key)
                    if item.kind is SNAPSHOT and reached is not None and item.seq < reached \
                            and not forged:
                        raise Violation(f"{key}: a REST snapshot at {item.seq} replaced a synced "
                                        f"book that had reached {reached}")
                    self.reached[key] = item.seq
                if item.kind is not UPDATE:
                    self.feed_ok[key] = True
                    self.lost[key] = None
                elif forged:
                    # A mutated frame may have forged its sequence to follow on from
                    # the book; past it, the chain is consistent for anyone to see.
                    self.lost[key] = None
                elif self.lost.get(key) and (self.lost[key][2] is None
                                             or item.seq > self.lost[key][2]):
                    # (An update before the lost one in its chain, delivered late, is fine.)
                    lost_raw, lost_names, _ = self.lost[key]
                    raise Violation(f"{key}: an update applied to a book that missed one and "
                                    f"was not resynced; the rejected frame ({lost_names}): "
                                    f"{lost_raw[:1500]!r}")
            elif isinstance(item, (Trade, Ticker, Clock)):
                self._check_print(key, item)
            else:
                if not isinstance(item, BookStatus) or item.state != "invalid":
                    raise Violation(f"the feed emitted {item!r}")
                self.feed_ok[key] = False
                self.lost[key] = None
                self.reached[key] = None
                self.failed.discard(item.product)  # a new invalidation may ask at once
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = ProductState(self.bars)
            try:
                records = state.on_item(item, DEPTH, ALERT_BPS)
            except Exception as ex:
                raise Violation(f"{type(ex).__name__} escaped ProductState.on_item: {ex}") \
                    from ex
            if isinstance(item, BookEvent) and item.kind is not UPDATE:
                self.book_ok[key] = True
            for rec in records:
                kind = rec["type"]
                counts[kind] += 1
                if kind == "summary":
                    if not state.valid or not self.book_ok.get(key):
                        raise Violation(f"{key}: summary from a book that is not valid")
                    _check_summary(rec)
                elif kind == "status":
                    if rec["state"] == "invalid":
                        self.book_ok[key] = False
                elif kind == "trade":
                    ids = self.trade_ids.setdefault(key, set())
                    if rec["trade_id"] in ids:
                        raise Violation(f"{key}: trade {rec['trade_id']!r} counted twice")
                    ids.add(rec["trade_id"])
                elif kind == "bar":
                    _check_bar(rec)
                elif kind == "alert" and rec["kind"] in ("crossed", "locked"):
                    self.book_ok[key] = False
                    more: List[Keyed] = []
                    feed.resync(item.product, self.ts, rec["kind"], rec["detail"], more)
                    cut.add(key)
                    counts["crossed"] += 1
                    self._process(more, raw, names)
            if isinstance(item, BookStatus):
                self.book_ok[key] = False

    def _check_event(self, key: str, ev: BookEvent, in_flight: bool = False) -> None:
        feed = self.feed
        state = feed.books.get(ev.product)
        if state is None or state.key != key or ev.venue != feed.venue.name:
            raise Violation(f"event for {ev.product!r} under key {key!r}, not the feed's")
        if valid_product(ev.product) is None:
            raise Violation(f"event for invalid product name {ev.product!r}")
        if ev.kind is UPDATE and not self.feed_ok.get(key) and not in_flight:
            raise Violation(f"{key}: the feed passed an update to a book it invalidated")
        if ev.kind not in (SNAPSHOT, UPDATE, REFRESH):
            raise Violation(f"event kind {ev.kind!r}")
        if ev.seq is not None and not (type(ev.seq) is int and 0 <= ev.seq <= MAX_SEQ):
            raise Violation(f"sequence {ev.seq!r}")
        if ev.ts_exchange is not None and not MIN_MS <= ev.ts_exchange <= MAX_MS:
            raise Violation(f"exchange time {ev.ts_exchange!r}")
        for side, levels in (("bid", ev.bids), ("ask", ev.asks)):
            # a snapshot's side may be a price -> size dict (state.events.Levels)
            for level in levels.items() if isinstance(levels, dict) else levels:
                _check_level(level, f"{key} {side}")
        self.stats.counts["events"] += 1
        self.stats.counts[f"{ev.kind}s"] += 1

    def _check_print(self, key: str, item: Any) -> None:
        """A trade, ticker or clock: the feed's product, every number finite and in range."""
        state = self.feed.books.get(item.product)
        if state is None or state.key != key or item.venue != self.feed.venue.name:
            raise Violation(f"{type(item).__name__} for {item.product!r} under key {key!r}")
        if not MIN_MS <= item.ts_exchange <= MAX_MS:
            raise Violation(f"exchange time {item.ts_exchange!r}")
        if isinstance(item, Trade):
            if item.side not in ("buy", "sell"):
                raise Violation(f"trade side {item.side!r}")
            _check_level((item.price, item.size), f"{key} trade")
            if not item.size > 0.0:
                raise Violation(f"{key}: trade size {item.size!r}")
            for name in ("base_size", "notional"):
                value = getattr(item, name)
                if type(value) is not float or not 0.0 < value < math.inf:
                    raise Violation(f"{key}: trade {name} {value!r}")
            if item.seq is not None and not (type(item.seq) is int and 0 <= item.seq <= MAX_SEQ):
                raise Violation(f"trade sequence {item.seq!r}")
        elif isinstance(item, Ticker):
            for name in ("mark", "index", "funding_rate", "last"):
                value = getattr(item, name)
                if value is not None and (type(value) is not float or not math.isfinite(value)):
                    raise Violation(f"{key}: ticker {name} {value!r}")
        self.stats.counts[type(item).__name__.lower() + "s"] += 1

    def _finish(self) -> None:
        for key, state in self.states.items():
            _check_book(key, state)
            venue, product = key.split(":", 1)
            for rec in state.finish(venue, product):
                _check_bar(rec)
                self.stats.counts["bar"] += 1
        counts = self.stats.counts
        for name in ("gaps", "resyncs", "rebased", "late", "snapshot_retries", "duplicates",
                     "stale_snapshots"):
            counts[name] += self.feed.counts[name]


class Fuzzer:
    """Sessions over every venue until ``frames`` frames were tried; deterministic
    given ``seed``."""

    def __init__(self, seed: int, corpora: Dict[str, Corpus]) -> None:
        self.seed = seed
        self.corpora = corpora
        self.stats = {venue: Stats() for venue in corpora}

    def run(self, frames: int) -> None:
        rng = random.Random(self.seed)
        for stats in self.stats.values():
            stats.sessions = rng.randrange(len(RATES))
        per_venue = frames / len(self.stats)
        # Sessions up to 4,000 frames, fewer in a short run: a dozen or more per venue.
        longest = int(min(4000, max(1000, per_venue // 10)))
        session_no = 0
        while True:
            venue = min(self.stats, key=lambda v: self.stats[v].frames)
            stats = self.stats[venue]
            if stats.frames >= per_venue:
                return
            session_no += 1
            session = Session(self.corpora[venue], random.Random(rng.getrandbits(64)),
                              rng.randint(200, longest), stats)
            try:
                session.run()
            except Violation as ex:
                raw, names = session.frame
                raise Violation(
                    f"fuzz failure: {ex}\n  seed {self.seed}, session {session_no} ({venue}), "
                    f"frame {session.index}, mutations {names}\n  frame: {raw[:3000]!r}\n"
                    f"  reproduce: pytest tests/test_fuzz.py --fuzz-seed {self.seed} "
                    f"--fuzz-frames {frames}") from ex


@pytest.fixture(scope="module")
def corpora() -> Dict[str, Corpus]:
    return {venue: _load(venue) for venue in CAPTURES}


@pytest.mark.fuzz
def test_mutated_real_frames_never_escape_or_corrupt_a_book(corpora, fuzz_frames, fuzz_seed,
                                                           capsys):
    fuzzer = Fuzzer(fuzz_seed, corpora)
    started = time.perf_counter()
    fuzzer.run(fuzz_frames)
    elapsed = time.perf_counter() - started
    total = sum(s.frames for s in fuzzer.stats.values())
    with capsys.disabled():
        print(f"\nfuzz: seed {fuzz_seed}, {total:,} frames in {elapsed:.1f} s "
              f"({total / elapsed:,.0f} frames/s)")
        for venue, s in fuzzer.stats.items():
            c = s.counts
            print(f"  {venue}: {s.frames:,} frames, {s.mutated:,} mutated, {c['bad']:,} bad, "
                  f"{c['snapshots']:,} snapshots applied, {c['updates']:,} updates, "
                  f"{c['summary']:,} summaries, {c['gaps']:,} gaps, {c['resyncs']:,} resyncs, "
                  f"{c['crossed']:,} crossed, {c['rebased']:,} rebased, {c['late']:,} late, "
                  f"{c['trade']:,} trades, "
                  f"{c['ticker']:,} tickers, {c['bar']:,} bars"
                  + (f", {c['rest_requests']:,} snapshot requests ({c['rest_failures']:,} "
                     f"failed, {c['rest_mutated']:,} replies mutated, {c['stale_snapshots']:,} "
                     f"stale)" if venue in BINANCE else ""))
    assert total >= fuzz_frames
    # The fuzz must reach both sides of the input checks on every venue, or it
    # would prove nothing: books rebuilt and summarised, frames rejected, gaps resynced.
    for venue, s in fuzzer.stats.items():
        c = s.counts
        assert s.mutated > s.frames // 10, venue
        assert c["bad"] > s.frames // 50, venue
        assert c["summary"] > s.frames // 10, venue
        assert c["snapshots"] > 10 and c["resyncs"] > 10, venue
        assert c["trade"] > 0 and c["bar"] > 0, venue

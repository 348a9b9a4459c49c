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

from sources.capture.format import read_capture
from sources.feed.feed import Feed, Keyed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.venues import get_venue
from sources.venues.base import (MAX_MS, MAX_PRICE, MAX_SEQ, MAX_SIZE, MIN_MS, FrameError,
                                 valid_product)
from state.events import REFRESH, SNAPSHOT, UPDATE, BookEvent, BookStatus, Clock, Ticker, Trade
from state.product import ProductState

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
CAPTURES = {
    "coinbase": ("coinbase_advanced_btc_eth.jsonl.gz",),
    "coinbase_exchange": ("coinbase_exchange_level2.jsonl.gz",),
    "deribit": ("deribit_options.jsonl.gz", "deribit_gap.jsonl"),
}
#: Levels per side kept of each recorded snapshot.
SNAPSHOT_LEVELS = 50
DEPTH = 10
ALERT_BPS = 10.0
BOOK_CHECK_EVERY = 997
#: Receive-time step per frame (ms): the feed's 15 s snapshot retry fires within a session.
TS_STEP_MS = 7.0
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
        for f in read_capture(RECORDINGS / name):
            if f.dir != "recv" or not isinstance(f.msg, dict):
                continue
            msg = f.msg
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
    else:
        corpus.extras = [
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}},
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}},
            {"jsonrpc": "2.0", "id": None, "error": {"code": 11050, "message": "bad_request"}},
            {"jsonrpc": "2.0", "id": 999_999, "error": {"code": 10028,
                                                        "message": "too_many_requests"}},
            _grouped(next(iter(snapshots.values()))),
        ]
    return corpus


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
    change the previous one and a new one."""

    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        super().__init__(corpus, rng)
        self.change: Dict[str, int] = {}

    def stamp(self, msg: Any) -> Any:
        params = msg.get("params")
        if msg.get("method") != "subscription" or not params["channel"].startswith("book."):
            return msg
        data = params["data"]
        inst = data["instrument_name"]
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


MODELS: Dict[str, Callable[[Corpus, random.Random], Model]] = {
    "coinbase": CoinbaseModel, "coinbase_exchange": CoinbaseExchangeModel,
    "deribit": DeribitModel}

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
SEQ_KEYS = ("sequence_num", "change_id", "prev_change_id", "id", "sequence", "timestamp")
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
    counts: Counter = field(default_factory=Counter)


class Session:
    """One feed and its books, fed by one venue's model exchange."""

    def __init__(self, corpus: Corpus, rng: random.Random, frames: int, stats: Stats) -> None:
        venue = get_venue(corpus.venue)
        self.corpus = corpus
        self.rng = rng
        self.frames = frames
        self.stats = stats
        self.model = MODELS[corpus.venue](corpus, rng)
        self.rate = rng.choice((0.0, 0.02, 0.1, 0.3, 0.6, 1.0))
        fixed = rng.random() < 0.5
        settings = {"depth": 10} if corpus.venue == "deribit" and rng.random() < 0.2 else {}
        self.bad = BadInput()
        self.feed = Feed(venue, list(corpus.snapshots) if fixed else None, self.bad,
                         settings=settings, errors=ErrorReplies())
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
        else:  # a replay: the capture starts with the books' snapshots
            self.pending.extend((0, snap) for snap in corpus.snapshots.values())

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
        return msg

    # -- the run
    def run(self) -> None:
        rng = self.rng
        for self.index in range(self.frames):
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

    def _reconnect(self) -> None:
        out = self.feed.disconnected(self.ts, "fuzz")
        self._process(out, b"<disconnect>", ["disconnect"])
        self.pending.clear()
        self.model.restart()
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
        try:
            self.feed.on_frame(raw, self.ts, out)
        except Exception as ex:
            raise Violation(f"{type(ex).__name__} escaped Feed.on_frame: {ex}") from ex
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
        if self.feed.outbox:
            self._answer(self._drain())

    def _process(self, out: List[Keyed], raw: bytes, names: List[str]) -> None:
        counts = self.stats.counts
        feed = self.feed
        forged = any(name not in STREAM_OPS for name in names)
        for key, item in out:
            if isinstance(item, BookEvent):
                self._check_event(key, item)
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
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = ProductState()
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
                elif kind == "alert" and rec["kind"] in ("crossed", "locked"):
                    self.book_ok[key] = False
                    more: List[Keyed] = []
                    feed.resync(item.product, self.ts, rec["kind"], rec["detail"], more)
                    counts["crossed"] += 1
                    self._process(more, raw, names)
            if isinstance(item, BookStatus):
                self.book_ok[key] = False

    def _check_event(self, key: str, ev: BookEvent) -> None:
        feed = self.feed
        state = feed.books.get(ev.product)
        if state is None or state.key != key or ev.venue != feed.venue.name:
            raise Violation(f"event for {ev.product!r} under key {key!r}, not the feed's")
        if valid_product(ev.product) is None:
            raise Violation(f"event for invalid product name {ev.product!r}")
        if ev.kind is UPDATE and not self.feed_ok.get(key):
            raise Violation(f"{key}: the feed passed an update to a book it invalidated")
        if ev.kind not in (SNAPSHOT, UPDATE, REFRESH):
            raise Violation(f"event kind {ev.kind!r}")
        if ev.seq is not None and not (type(ev.seq) is int and 0 <= ev.seq <= MAX_SEQ):
            raise Violation(f"sequence {ev.seq!r}")
        if ev.ts_exchange is not None and not MIN_MS <= ev.ts_exchange <= MAX_MS:
            raise Violation(f"exchange time {ev.ts_exchange!r}")
        for level in ev.bids:
            _check_level(level, f"{key} bid")
        for level in ev.asks:
            _check_level(level, f"{key} ask")
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
        counts = self.stats.counts
        for name in ("gaps", "resyncs", "rebased", "snapshot_retries", "duplicates"):
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
        session_no = 0
        while True:
            venue = min(self.stats, key=lambda v: self.stats[v].frames)
            stats = self.stats[venue]
            if stats.frames >= frames / len(self.stats):
                return
            session_no += 1
            session = Session(self.corpora[venue], random.Random(rng.getrandbits(64)),
                              rng.randint(200, 4000), stats)
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
                  f"{c['crossed']:,} crossed, {c['rebased']:,} rebased")
    assert total >= fuzz_frames
    # The fuzz must reach both sides of the input checks on every venue, or it
    # would prove nothing: books rebuilt and summarised, frames rejected, gaps resynced.
    for venue, s in fuzzer.stats.items():
        c = s.counts
        assert s.mutated > s.frames // 10, venue
        assert c["bad"] > s.frames // 50, venue
        assert c["summary"] > s.frames // 10, venue
        assert c["snapshots"] > 10 and c["resyncs"] > 10, venue

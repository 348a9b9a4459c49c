"""The bundled recordings as benchmark inputs, and longer captures built from them.

Everything here starts from the real recorded frames. ``Frame.raw`` is a frame's
text exactly as the exchange sent it (a lobstream capture embeds it verbatim under
``"msg"``), so parse benchmarks decode the same bytes a live socket delivers.

Longer captures repeat recorded update frames. The only edits are the sequence
numbers, renumbered so each chain stays contiguous (the feed would otherwise report
gaps): Coinbase's per-connection ``sequence_num``, Deribit's per-book
``change_id``/``prev_change_id``; and the capture's local receive time ``ts``,
which advances by the recording's length per pass. Exchange timestamps, prices
and sizes are as recorded. One subtlety decides *which* frames repeat:
replaying a product's opening updates on top of the book its closing updates left
behind can cross that book (ETH-USD drifts 0.1 USD in the 25 s recording, so an
opening bid lands above a closing ask), and the pipeline then rightly invalidates
the book and drops the product's updates, which would make it look faster. So
the first pass plays every update once, and later passes repeat, per product,
the longest tail of its updates that replays cleanly over the book the full
recording leaves behind (:func:`replayable_tail`). Once one pass has replayed
cleanly, every further pass does too: each pass ends with the same book.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import orjson

from benchmarks.frames import embedded_frame
from sources.venues import coinbase, deribit
from sources.capture.format import FORMAT_VERSION, frame_lines
from state.book import OrderBook
from sources.venues.base import BOOK
from state.events import SNAPSHOT, BookEvent

ROOT = Path(__file__).resolve().parent.parent
COINBASE_CAPTURE = ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT_CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"

_SEQ = re.compile(rb'"sequence_num":\d+')


class Frame(NamedTuple):
    """One received frame: recorded receive time, stream, raw text and decoded JSON."""

    ts: float
    stream: str
    raw: bytes
    msg: Any


def recv_frames(path: Path) -> List[Frame]:
    """Every received JSON frame of a capture, in file order."""
    frames = []
    for line in frame_lines(path):
        d = orjson.loads(line)
        if d.get("dir", "recv") != "recv" or d.get("msg") is None:
            continue
        raw = embedded_frame(line)
        frames.append(Frame(d["ts"], d["stream"], raw, d["msg"]))
    return frames


# ----------------------------------------------------------------------- Coinbase


@dataclass
class CoinbaseRecording:
    """The Coinbase Advanced Trade recording split into what benchmarks need."""

    prefix: List[Frame]          # received frames up to the last snapshot, minus updates
    snapshots: Dict[str, Frame]  # product -> its l2_data snapshot frame
    updates: List[Frame]         # every l2_data update frame, recorded order
    events: Dict[int, BookEvent] = field(default_factory=dict)  # id(frame) -> parsed event
    tail: Dict[str, int] = field(default_factory=dict)  # product -> first repeatable update

    @staticmethod
    def product(frame: Frame) -> str:
        return frame.msg["events"][0]["product_id"]

    def product_updates(self, product: str) -> List[Frame]:
        return [f for f in self.updates if self.product(f) == product]

    def repeat_unit(self, product: Optional[str] = None) -> List[Frame]:
        """Update frames a second and later pass repeats (all products, or one)."""
        seen: Dict[str, int] = {}
        unit = []
        for f in self.updates:
            p = self.product(f)
            i = seen[p] = seen.get(p, -1) + 1
            if i >= self.tail[p] and (product is None or p == product):
                unit.append(f)
        return unit


def load_coinbase(path: Path = COINBASE_CAPTURE) -> CoinbaseRecording:
    frames = recv_frames(path)
    prefix: List[Frame] = []
    snapshots: Dict[str, Frame] = {}
    updates: List[Frame] = []
    last_snapshot = max(i for i, f in enumerate(frames) if _l2_type(f) == "snapshot")
    for i, f in enumerate(frames):
        kind = _l2_type(f)
        if kind == "update":
            updates.append(f)
        elif i <= last_snapshot:
            prefix.append(f)
            if kind == "snapshot":
                snapshots[f.msg["events"][0]["product_id"]] = f
    rec = CoinbaseRecording(prefix, snapshots, updates)
    for f in list(snapshots.values()) + updates:
        rec.events[id(f)] = coinbase.parse(f.raw, f.ts).events[0]
    for product, snap in snapshots.items():
        evs = [rec.events[id(f)] for f in rec.product_updates(product)]
        rec.tail[product] = replayable_tail(rec.events[id(snap)], evs)
    return rec


def _l2_type(frame: Frame) -> Optional[str]:
    """``snapshot``/``update`` for an l2_data frame (one event each), else None."""
    m = frame.msg
    if m.get("channel") != "l2_data":
        return None
    if len(m["events"]) != 1:
        raise ValueError("expected one l2_data event per frame")
    return m["events"][0]["type"]


def replayable_tail(snapshot: BookEvent, updates: Sequence[BookEvent]) -> int:
    """Smallest ``k`` such that ``updates[k:]``, applied again to the book that
    snapshot + all updates produce, never crosses or locks it."""
    book = OrderBook()
    book.replace(snapshot.bids, snapshot.asks)
    for ev in updates:
        book.apply(ev.bids, ev.asks)
    for k in range(len(updates)):
        undo: List[Tuple[Any, float, Optional[float]]] = []
        clean = True
        for ev in updates[k:]:
            for side, changes in ((book.bids, ev.bids), (book.asks, ev.asks)):
                for price, _ in changes:
                    undo.append((side, price, side.get(price)))
            book.apply(ev.bids, ev.asks)
            bb, ba = book.best_bid(), book.best_ask()
            if bb is not None and ba is not None and bb[0] >= ba[0]:
                clean = False
                break
        for side, price, old in reversed(undo):
            if old is None:
                side.pop(price, None)
            else:
                side[price] = old
        if clean:
            return k
    return len(updates)


def with_seq(raw: bytes, seq: int) -> bytes:
    """``raw`` with its top-level ``sequence_num`` set to ``seq`` (nothing else changes)."""
    out, n = _SEQ.subn(b'"sequence_num":%d' % seq, raw, count=1)
    if n != 1:
        raise ValueError("frame has no sequence_num")
    return out


class CaptureFile:
    """Writes an uncompressed lobstream capture, renumbering ``sequence_num`` per stream."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self._f = open(path, "wb")
        self._f.write(orjson.dumps({"lobstream_capture": FORMAT_VERSION, "source": source,
                                    "created": 0.0}) + b"\n")
        self._seq: Dict[str, int] = {}
        self.frames = 0

    def write(self, frame: Frame, stream: str, ts: float, venue: str = "coinbase") -> None:
        raw = frame.raw
        if venue == "coinbase":
            seq = self._seq[stream] = self._seq.get(stream, -1) + 1
            raw = with_seq(raw, seq)
        head = orjson.dumps({"ts": ts, "venue": venue, "stream": stream, "dir": "recv"})
        self._f.write(head[:-1] + b',"msg":' + raw + b"}\n")
        self.frames += 1

    def close(self) -> None:
        self._f.close()


def _period(rec: CoinbaseRecording) -> float:
    return rec.updates[-1].ts - rec.updates[0].ts + 1.0


def build_repeated(rec: CoinbaseRecording, path: Path, passes: int) -> Dict[str, Any]:
    """One-connection capture (as recorded): the frames up to both snapshots, all
    773 update frames, then ``passes - 1`` repeats of the replayable tails. Receive
    times advance by the recording's length per pass."""
    stream = rec.prefix[0].stream
    out = CaptureFile(path, f"lobstream benchmark: {COINBASE_CAPTURE.name}, {passes} passes")
    for f in rec.prefix:
        out.write(f, stream, f.ts)
    unit = rec.repeat_unit()
    period = _period(rec)
    by_product: Dict[str, int] = {}
    for r in range(passes):
        for f in rec.updates if r == 0 else unit:
            out.write(f, stream, f.ts + r * period)
            p = rec.product(f)
            by_product[p] = by_product.get(p, 0) + 1
    out.close()
    return {"path": str(path), "streams": 1, "prefix_frames": len(rec.prefix),
            "update_frames": sum(by_product.values()), "first_pass_frames": len(rec.updates),
            "update_frames_by_product": by_product, "passes": passes,
            "repeat_unit_frames": len(unit), "bytes": path.stat().st_size}


def build_per_product(rec: CoinbaseRecording, directory: Path,
                      frames_per_product: int) -> Dict[str, Any]:
    """One capture file and stream per product, as a live run opens them (one
    connection per product is the Coinbase default, and lobstream's recorder
    writes each connection's stream with its own ``sequence_num`` from 0): the
    recorded single-connection capture split by product, ``sequence_num``
    renumbered per stream. Each holds the product's snapshot, its updates once,
    then its replayable tail repeated until the stream holds about
    ``frames_per_product`` updates, so both streams carry equal work."""
    directory.mkdir(parents=True, exist_ok=True)
    period = _period(rec)
    meta: Dict[str, Any] = {"dir": str(directory), "streams": len(rec.snapshots),
                            "update_frames_by_product": {}}
    for product, snap in sorted(rec.snapshots.items()):
        stream = f"coinbase:{product}"
        out = CaptureFile(directory / f"coinbase_{product}.jsonl",
                          f"lobstream benchmark: {COINBASE_CAPTURE.name}, {product} only")
        out.write(snap, stream, snap.ts)
        n, r = 0, 0
        first, unit = rec.product_updates(product), rec.repeat_unit(product)
        if not unit:
            raise ValueError(f"{product}: no update replays cleanly; cannot repeat")
        while n < frames_per_product:
            for f in first if r == 0 else unit:
                out.write(f, stream, f.ts + r * period)
                n += 1
                if r > 0 and n >= frames_per_product:
                    break
            r += 1
        out.close()
        meta["update_frames_by_product"][product] = n
    meta["update_frames"] = sum(meta["update_frames_by_product"].values())
    return meta


# ----------------------------------------------------------------------- Deribit

_CHANGE_ID = re.compile(rb'"change_id":\d+')
_PREV_CHANGE_ID = re.compile(rb'"prev_change_id":\d+')


@dataclass
class DeribitRecording:
    """The Deribit recording's book notifications per instrument."""

    snapshots: Dict[str, Frame]
    updates: Dict[str, List[Frame]]
    events: Dict[int, BookEvent] = field(default_factory=dict)  # id(frame) -> parsed event
    tail: Dict[str, int] = field(default_factory=dict)
    ordered: List[BookEvent] = field(default_factory=list)  # every book event, recorded order


def load_deribit(path: Path = DERIBIT_CAPTURE) -> DeribitRecording:
    rec = DeribitRecording({}, {})
    for f in recv_frames(path):
        parsed = deribit.parse(f.raw, f.ts)
        if parsed.kind != BOOK:
            continue
        for ev in parsed.events:
            rec.events[id(f)] = ev
            rec.ordered.append(ev)
            if ev.kind == SNAPSHOT:
                rec.snapshots[ev.product] = f
                rec.updates.setdefault(ev.product, [])
            else:
                rec.updates[ev.product].append(f)
    for product, snap in rec.snapshots.items():
        evs = [rec.events[id(f)] for f in rec.updates[product]]
        rec.tail[product] = replayable_tail(rec.events[id(snap)], evs) if evs else 0
    return rec


def with_change_ids(raw: bytes, change_id: int, prev: Optional[int]) -> bytes:
    """``raw`` with ``change_id`` (and ``prev_change_id``, where present) replaced."""
    out, n = _CHANGE_ID.subn(b'"change_id":%d' % change_id, raw, count=1)
    if n != 1:
        raise ValueError("frame has no change_id")
    if prev is not None:
        out, n = _PREV_CHANGE_ID.subn(b'"prev_change_id":%d' % prev, out, count=1)
        if n != 1:
            raise ValueError("update frame has no prev_change_id")
    return out


def build_deribit_per_instrument(rec: DeribitRecording, directory: Path,
                                 instruments: Sequence[str],
                                 frames_per_instrument: int) -> Dict[str, Any]:
    """One capture file and stream per instrument: its snapshot, its updates once,
    then its replayable tail repeated up to ``frames_per_instrument`` updates. The
    ``change_id``/``prev_change_id`` chain is renumbered on from the snapshot's
    ``change_id`` so it stays contiguous (the feed would otherwise see a gap at
    every repeat)."""
    directory.mkdir(parents=True, exist_ok=True)
    meta: Dict[str, Any] = {"dir": str(directory), "streams": len(instruments),
                            "update_frames_by_product": {}}
    for product in instruments:
        stream = f"deribit:{product}"
        out = CaptureFile(directory / f"deribit_{product}.jsonl",
                          f"lobstream benchmark: {DERIBIT_CAPTURE.name}, {product} only")
        snap = rec.snapshots[product]
        out.write(snap, stream, snap.ts, venue="deribit")
        change_id = rec.events[id(snap)].seq
        first = rec.updates[product]
        unit = first[rec.tail[product]:]
        if not unit:
            raise ValueError(f"{product}: no update replays cleanly; cannot repeat")
        period = first[-1].ts - snap.ts + 1.0
        n, r = 0, 0
        while n < frames_per_instrument:
            for f in first if r == 0 else unit:
                change_id += 1
                raw = with_change_ids(f.raw, change_id, change_id - 1)
                out.write(Frame(f.ts, stream, raw, None), stream, f.ts + r * period,
                          venue="deribit")
                n += 1
                if r > 0 and n >= frames_per_instrument:
                    break
            r += 1
        out.close()
        meta["update_frames_by_product"][product] = n
    meta["update_frames"] = sum(meta["update_frames_by_product"].values())
    return meta


# ----------------------------------------------------------------------- Binance trades

BINANCE_SPOT_CAPTURE = ROOT / "recordings" / "binance_spot_btcusdt.jsonl.gz"
_TRADE_FIELDS = {name: re.compile(rb'"%s":\d+' % name.encode()) for name in ("t", "T", "E")}


def _set_int(raw: bytes, name: str, value: int) -> bytes:
    out, n = _TRADE_FIELDS[name].subn(b'"%s":%d' % (name.encode(), value), raw, count=1)
    if n != 1:
        raise ValueError(f"trade frame has no {name!r}")
    return out


def repeated_trades(passes: int, path: Path = BINANCE_SPOT_CAPTURE) -> List[Tuple[float, bytes]]:
    """``(ts_recv, raw)`` of the recording's ``@trade`` frames, ``passes`` times over.

    Trade ids ``t`` are renumbered so they stay sequential (a repeated id is a
    duplicate, which lobstream rightly counts once), and the trade and event times
    ``T``/``E`` and the receive time advance by the recording's span per pass, so
    time moves forward and bars keep closing. Prices, sizes and sides are as
    recorded."""
    trades = [f for f in recv_frames(path) if f.msg.get("stream", "").endswith("@trade")]
    if not trades:
        raise ValueError(f"{path}: no @trade frames")
    times = [f.msg["data"]["T"] for f in trades]
    span = max(times) - min(times) + 1000
    first_id = trades[0].msg["data"]["t"]
    out = []
    for r in range(passes):
        for i, f in enumerate(trades):
            d = f.msg["data"]
            raw = _set_int(f.raw, "t", first_id + r * len(trades) + i)
            raw = _set_int(_set_int(raw, "T", d["T"] + r * span), "E", d["E"] + r * span)
            out.append((f.ts + r * span, raw))
    return out

"""Exact books after a restart, without Kafka: the resume logic on real recordings.

A stream is read from offset 0, "crashes" at offset k, and is resumed from the
state it would have snapshotted there (:func:`plan_resume`, :class:`ResumableStream`),
as the Kafka partition does. For every crash point: every event emitted from k on
equals the uninterrupted run's, and the books the rebuild pass (frames before k,
through the book step, no records) leaves at k equal the uninterrupted books at k.
The recordings cover every kind of rebuild point: Coinbase with snapshots re-sent
mid-stream and a capture restart (an ``open`` event with ``sequence_num`` from 0),
Deribit chained books with an instrument removed (delisted), Binance REST snapshots with buffered diffs, Coinbase
Exchange without sequence numbers; bar clocks are on (``clock_ms``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import orjson
import pytest

from sources.capture.codec import CaptureFrame
from sources.capture.format import read_capture
from sources.feed.captured import open_event, remove_event, resync_event
from sources.feed.feed import Keyed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.kafka.tracker import (PartitionState, Point, ResumableStream, StreamState,
                                   plan_resume)
from sources.venues import VENUES
from state.events import BookEvent, BookStatus
from state.product import ProductState

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
CLOCK_MS = 1000.0
DEPTH, ALERT_BPS = 10, 10.0


def key(venue: str):
    return lambda product: f"{venue}:{product}"


def reader(frame: CaptureFrame, resume: StreamState = None) -> ResumableStream:
    venue = VENUES[frame.venue if resume is None else resume.venue]
    return ResumableStream(venue, frame.stream, key(venue.name), BadInput(), ErrorReplies(),
                           CLOCK_MS, resume)


def valid_books(states: Dict[str, ProductState]) -> Dict[str, Tuple[dict, dict]]:
    return {k: (dict(s.book.bids), dict(s.book.asks)) for k, s in states.items() if s.valid}


def apply(states: Dict[str, ProductState], events: Sequence[Keyed]) -> None:
    """The book step's effect on the books (not its records)."""
    for k, ev in events:
        if type(ev) in (BookEvent, BookStatus):
            states.setdefault(k, ProductState()).on_item(ev, DEPTH, ALERT_BPS)


def uninterrupted(frames: Sequence[CaptureFrame], crashes: Sequence[int]
                  ) -> Tuple[List[List[Keyed]], Dict[int, Tuple[PartitionState, dict]]]:
    """Events per offset; at each crash point, the resume state and the books."""
    streams: Dict[str, ResumableStream] = {}
    books: Dict[str, ProductState] = {}
    out: List[List[Keyed]] = []
    at: Dict[int, Tuple[PartitionState, dict]] = {}
    last = None
    for offset, frame in enumerate(frames):
        if offset in crashes:
            at[offset] = (PartitionState(offset, last, {s: r.state(offset)
                                                        for s, r in streams.items()}),
                          valid_books(books))
        r = streams.get(frame.stream) or streams.setdefault(frame.stream, reader(frame))
        items = r.handle(offset, frame)[0]
        apply(books, items)
        out.append(items)
        last = (frame.stream, frame.ts)
    return out, at


def resumed(frames: Sequence[CaptureFrame], state: PartitionState
            ) -> Tuple[int, List[Keyed], Dict[int, List[Keyed]]]:
    """Where the restart begins, the events of the rebuild pass, and the events
    of every frame from the crash point on."""
    plan = plan_resume(state, 0)
    assert not plan.lost and not plan.gap
    streams = {s: reader(frames[0], st) for s, st in plan.streams.items()}
    if plan.expect is not None:
        assert (frames[plan.begin].stream, frames[plan.begin].ts) == plan.expect
    rebuild: List[Keyed] = []
    live: Dict[int, List[Keyed]] = {}
    for offset in range(plan.begin, len(frames)):
        frame = frames[offset]
        r = streams.get(frame.stream) or streams.setdefault(frame.stream, reader(frame))
        if offset < r.skip:
            continue
        items = r.handle(offset, frame)[0]
        if offset < state.next:
            rebuild.extend(items)
        else:
            live[offset] = items
    return plan.begin, rebuild, live


def check(frames: List[CaptureFrame], crashes: Sequence[int]) -> List[int]:
    """Check every crash point; where each restart began."""
    out, at = uninterrupted(frames, crashes)
    begins = []
    for k in crashes:
        state, expected = at[k]
        begin, rebuild, live = resumed(frames, state)
        rebuilt: Dict[str, ProductState] = {}
        apply(rebuilt, rebuild)
        assert valid_books(rebuilt) == expected, f"books differ at crash point {k}"
        for offset in range(k, len(frames)):
            assert live.get(offset, []) == out[offset], f"crash at {k}: offset {offset} differs"
        begins.append(begin)
    return begins


def frames_of(path: Path) -> List[CaptureFrame]:
    return list(read_capture(path))


def line(ts: float, venue: str, stream: str, msg: bytes) -> CaptureFrame:
    return CaptureFrame(ts, venue, stream, "event", msg)


def renumbered(frame: CaptureFrame, seq: int, shift: float = 0.0) -> CaptureFrame:
    if frame.dir != "recv":
        return CaptureFrame(frame.ts + shift, frame.venue, frame.stream, frame.dir, frame.raw)
    msg = orjson.loads(frame.raw)
    msg["sequence_num"] = seq
    return CaptureFrame(frame.ts + shift, frame.venue, frame.stream, "recv", orjson.dumps(msg))


def coinbase_restarted() -> List[CaptureFrame]:
    """The Coinbase recording (one connection, BTC-USD and ETH-USD) with, halfway, a
    resync event and the fresh snapshot it brought (BTC-USD's book at that point),
    then a capture restart: an ``open`` event and the connection again from its
    start (``sequence_num`` from 0, trades snapshot resent)."""
    frames = [f for f in frames_of(RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz")
              if f.dir in ("recv", "send")]
    stream, half = frames[0].stream, len(frames) // 2
    r = reader(frames[0])
    book = ProductState()
    for offset, frame in enumerate(frames[:half]):
        for _, ev in r.handle(offset, frame)[0]:
            if type(ev) in (BookEvent, BookStatus) and ev.product == "BTC-USD":
                book.on_item(ev, DEPTH, ALERT_BPS)
    recorded = next(f for f in frames if b'"type":"snapshot","product_id":"BTC-USD"' in f.raw)
    snapshot = orjson.loads(recorded.raw)
    when = snapshot["events"][0]["updates"][0]["event_time"]
    snapshot["events"][0]["updates"] = [
        {"side": side, "event_time": when, "price_level": repr(px), "new_quantity": repr(sz)}
        for side, levels in (("bid", book.book.bids), ("offer", book.book.asks))
        for px, sz in levels.items()]
    ts = frames[half].ts
    out = [renumbered(f, i) for i, f in enumerate(frames[:half])]
    out.append(line(ts, "coinbase", stream, resync_event("BTC-USD", "crossed", "test")))
    out.append(CaptureFrame(ts, "coinbase", stream, "recv", orjson.dumps(snapshot)))
    out += [renumbered(f, half + 1 + i) for i, f in enumerate(frames[half:])]
    shift = frames[-1].ts - frames[0].ts + 1000.0
    out.append(line(frames[-1].ts + 1.0, "coinbase", stream, open_event(["BTC-USD", "ETH-USD"])))
    out += [renumbered(f, i, shift) for i, f in enumerate(frames)]
    return out


def deribit_with_removal() -> List[CaptureFrame]:
    """The Deribit recording (10 instruments on one connection) with one instrument
    removed halfway (delisted), as the capture records it."""
    frames = frames_of(RECORDINGS / "deribit_options.jsonl.gz")
    half = len(frames) // 2
    gone = orjson.loads(frames[half].raw)["params"]["data"]["instrument_name"]
    return frames[:half] + [line(frames[half].ts, "deribit", frames[0].stream,
                                 remove_event([gone], "delisted"))] + frames[half:]


CASES = {
    "coinbase": coinbase_restarted,
    "deribit": deribit_with_removal,
    "binance_spot": lambda: frames_of(RECORDINGS / "binance_spot_10pairs.jsonl.gz"),
    "binance_coinm": lambda: frames_of(RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz"),
    "coinbase_exchange": lambda: frames_of(RECORDINGS / "coinbase_exchange_level2.jsonl.gz"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resumed_streams_emit_exactly_what_the_uninterrupted_run_did(case):
    frames = CASES[case]()
    n = len(frames)
    crashes = sorted(set(range(1, n, max(1, n // 10))) | {n - 1})
    begins = check(frames, crashes)
    assert all(b <= k for b, k in zip(begins, crashes))
    if case == "coinbase":
        # A restart begins at the last snapshots, not at the start of the stream:
        # late crash points begin in the second connection, after its open.
        opened = next(i for i, f in enumerate(frames) if f.dir == "event"
                      and b'"open"' in f.raw)
        assert begins[-1] > opened


def test_plan_resume_after_retention_and_gaps():
    a = StreamState("coinbase", Point(10, 1.0, 0.0), ("BTC-USD",), ("BTC-USD",))
    b = StreamState("deribit", Point(40, 2.0, 0.0), ("X-1",), ("X-1",))
    quiet = StreamState("coinbase", Point(100, 0.0, 5.0), ("ETH-USD",), ())
    state = PartitionState(100, ("coinbase:ETH-USD", 9.0),
                           {"coinbase:BTC-USD": a, "deribit:X": b, "coinbase:ETH-USD": quiet})
    plan = plan_resume(state, 0)
    assert (plan.begin, plan.expect, sorted(plan.streams), plan.lost, plan.gap) == (
        10, ("coinbase:BTC-USD", 1.0), sorted(state.streams), {}, False)
    # Retention deleted offset 10: BTC-USD's book is lost, X-1 is rebuilt from 40.
    plan = plan_resume(state, 20)
    assert (plan.begin, plan.expect, list(plan.lost)) == (40, ("deribit:X", 2.0),
                                                           ["coinbase:BTC-USD"])
    # Nothing left to rebuild: the last frame read is read again, only to check it.
    plan = plan_resume(state, 50)
    assert (plan.begin, plan.expect) == (99, ("coinbase:ETH-USD", 9.0))
    assert sorted(plan.lost) == ["coinbase:BTC-USD", "deribit:X"]
    # Frames deleted before they were ever read: a gap, every book lost.
    plan = plan_resume(state, 150)
    assert (plan.begin, plan.gap, sorted(plan.lost)) == (150, True, sorted(state.streams))

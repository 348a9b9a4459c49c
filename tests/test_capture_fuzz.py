"""Fuzzing the capture reader with mutated real capture lines (hypothesis).

Lines of the bundled Deribit capture, plus a Binance combined-stream line and a
``raw`` line, are mutated (bytes flipped, cut, inserted, lines duplicated or
dropped, the file truncated, gzip-compressed and cut) and written to a file. The
reader must never raise anything but NotACaptureError (the header was destroyed),
a frame's ``msg`` nothing but FrameDecodeError, every frame it returns must carry a
valid envelope, and every line that is still an intact original line must come
back, in order.
"""

from __future__ import annotations

import gzip
from itertools import islice
from pathlib import Path
from typing import List

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from sources.capture.codec import DIRECTIONS, TS_MAX_MS, TS_MIN_MS
from sources.capture.format import (
    CaptureReport, FrameDecodeError, NotACaptureError, list_streams, read_capture,
)

REC = Path(__file__).resolve().parents[1] / "recordings" / "deribit_options.jsonl.gz"
with gzip.open(REC, "rb") as _f:
    BASE: List[bytes] = [line.rstrip(b"\n") for line in islice(_f, 25)]
BASE += [
    b'{"ts":1786309548000.5,"venue":"binance","stream":"binance:x","dir":"recv","msg":'
    b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","U":1,"u":2,"b":[],"a":[]}}}',
    b'{"ts":1786309548001,"venue":"deribit","stream":"deribit:x","dir":"recv","raw":"not json \\u0000"}',
    b'{"ts":1786309548002,"venue":"binance","stream":"binance:x","dir":"rest",'
    b'"url":"https://api.binance.com/api/v3/depth?symbol=BTCUSDT","msg":{"lastUpdateId":1}}',
]
TOKENS = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b'","msg":', b',"raw":', b"\n",
          b"\r", b"\x00", b"NaN", b"1e999", b'"ts":', b"\xff", b"\xc3", b"\\ud800", b"-",
          b"99999999999999999999999", b"[" * 2000, b" "]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.integers(1, 400)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(TOKENS)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(max_size=8)),
    st.tuples(st.just("dup"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("drop"), st.integers(0, 10**6), st.just(0)),
)


def mutate(lines: List[bytes], target: int, op: tuple) -> None:
    i = target % len(lines)
    kind, pos, arg = op
    text = lines[i]
    at = pos % (len(text) + 1)
    if kind == "flip" and text:
        at %= len(text)
        lines[i] = text[:at] + bytes([text[at] ^ arg]) + text[at + 1:]
    elif kind == "cut":
        lines[i] = text[:at] + text[at + arg:]
    elif kind == "insert":
        lines[i] = text[:at] + arg + text[at:]
    elif kind == "dup":
        lines.insert(i, text)
    elif kind == "drop" and len(lines) > 1:
        del lines[i]


def full_decode(text: bytes):
    return orjson.loads(text)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.integers(0, 10**6), mutation), max_size=6),
       compress=st.booleans(), cut=st.one_of(st.none(), st.integers(0, 10**6)),
       final_newline=st.booleans())
def test_reader_survives_mutated_lines(tmp_path_factory, ops, compress, cut, final_newline) -> None:
    lines = list(BASE)
    for target, op in ops:
        mutate(lines, target, op)
    body = b"\n".join(lines) + (b"\n" if final_newline else b"")
    data = gzip.compress(body) if compress else body
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path_factory.mktemp("fuzz") / ("c.jsonl.gz" if compress else "c.jsonl")
    path.write_bytes(data)

    report = CaptureReport(logger=None)
    try:
        frames = list(read_capture(path, report=report))
    except NotACaptureError:
        try:
            list_streams([path])
        except NotACaptureError:
            return
        raise AssertionError("list_streams accepted a file read_capture refused")
    streams = list_streams([path])
    for f in frames:
        assert TS_MIN_MS <= f.ts < TS_MAX_MS and f.dir in DIRECTIONS
        assert isinstance(f.venue, str) and isinstance(f.stream, str)
        assert isinstance(f.raw, bytes) and f.stream in streams
        assert f.url is None or isinstance(f.url, str)
        try:
            f.msg
        except FrameDecodeError:
            pass
        repr(f)

    if cut is None:  # intact original lines (whole, newline-ended or last) all come back
        written = body.split(b"\n")
        if not final_newline and written and written[-1] not in BASE:
            written = written[:-1]
        originals = set(BASE[1:])
        expected = [full_decode(x)["ts"] for x in written[1:] if x in originals]
        got = iter(f.ts for f in frames)
        assert all(any(ts == g for g in got) for ts in expected)  # a subsequence, in order

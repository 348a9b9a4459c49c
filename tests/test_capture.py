"""Tests for the capture format: reader, writer and recorder on real files.

Every capture here is a file on disk written by the real writer or cut from the
bundled recordings; the bad-line tests write the damaged lines a real recorder,
disk or foreign tool produces. Process-level faults (kill -9, full disk,
read-only directories) are in test_capture_faults.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import List

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from sources.capture import reader as reader_module
from sources.capture.format import (
    CaptureFrame, CaptureReport, CaptureWriter, FrameDecodeError, NotACaptureError, Recorder,
    RecorderStats,
    RecordDirError, check_record_dir, list_streams, read_capture, read_header, safe_name,
)

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "recordings"
BUNDLED = ["coinbase_advanced_btc_eth.jsonl.gz", "deribit_options.jsonl.gz",
           "deribit_gap.jsonl", "coinbase_exchange_level2.jsonl.gz"]
T0 = 1_786_309_548_000.0


def capture_lines(path: Path) -> List[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read().splitlines()


def write_capture(path: Path, lines: List[bytes], header: bool = True) -> Path:
    body = b"".join(line + b"\n" for line in lines)
    if header:
        body = b'{"lobstream_capture":1,"source":"test","created":1}\n' + body
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


def line(ts: object = T0, stream: str = "deribit:a", frame: bytes = b'{"x":1}') -> bytes:
    return (b'{"ts":' + orjson.dumps(ts) + b',"venue":"deribit","stream":' + orjson.dumps(stream)
            + b',"dir":"recv","msg":' + frame + b"}")


# ------------------------------------------------------------ bundled recordings


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_captures_read_as_a_full_decode_does(name: str) -> None:
    """The four bundled captures come back unchanged: same fields as decoding each
    line whole, and ``raw`` is exactly the embedded bytes."""
    path = RECORDINGS / name
    lines = [x for x in capture_lines(path)[1:] if x.strip()]
    frames = list(read_capture(path))
    assert len(frames) == len(lines)
    for frame, text in zip(frames, lines):
        d = orjson.loads(text)
        assert (frame.ts, frame.venue, frame.stream, frame.dir, frame.url) == (
            d["ts"], d["venue"], d["stream"], d["dir"], None)
        assert frame.is_json and frame.msg == d["msg"]
        start = text.index(b',"msg":') + len(b',"msg":')
        assert frame.raw == text[start:-1]


def test_foreign_layouts_read_frame_for_frame(tmp_path: Path) -> None:
    """json.dumps with spaces, keys in another order and an extra key: a full decode
    gives the same frames, re-encoded compactly (the exchange's frames are compact,
    so even the bytes agree)."""
    for name in ("deribit_options.jsonl.gz", "coinbase_exchange_level2.jsonl.gz"):
        src = RECORDINGS / name
        lines = capture_lines(src)
        objs = [json.loads(x) for x in lines[1:]]
        spaced = [json.dumps(o).encode() for o in objs]
        reordered = [json.dumps({"msg": o["msg"], "dir": o["dir"], "stream": o["stream"],
                                 "venue": o["venue"], "ts": o["ts"], "note": "x"},
                                separators=(",", ":")).encode() for o in objs]
        compact = list(read_capture(src))
        for variant, body in (("spaced", spaced), ("reordered", reordered)):
            path = write_capture(tmp_path / f"{variant}_{name}", body)
            report = CaptureReport()
            got = list(read_capture(path, report=report))
            assert not report.counts
            assert got == compact, (variant, name)
            assert [f.msg for f in got] == [f.msg for f in compact]


def test_a_frames_own_stream_key_is_not_the_envelopes(tmp_path: Path) -> None:
    """A Binance combined-stream frame carries "stream" inside msg."""
    frame = b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","s":"BTCUSDT"}}'
    compact = line(stream="binance:conn", frame=frame).replace(b'"deribit"', b'"binance"')
    foreign = orjson.dumps({"msg": orjson.loads(frame), "stream": "binance:conn",
                            "ts": T0, "dir": "recv", "venue": "binance"})
    path = write_capture(tmp_path / "b.jsonl", [compact, foreign])
    frames = list(read_capture(path))
    assert [f.stream for f in frames] == ["binance:conn", "binance:conn"]
    assert frames[0] == frames[1]
    assert list(read_capture(path, ["btcusdt@depth@100ms"])) == []


# ------------------------------------------------------------ round trips


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_writer_round_trip(tmp_path: Path, suffix: str) -> None:
    pretty = b'{\n  "jsonrpc": "2.0",\n  "id": 7\n}\n'
    path = tmp_path / f"c{suffix}"
    with CaptureWriter(path) as w:
        w.write(T0, "deribit", "deribit:a", '{"id":1}', "send")
        w.write(T0 + 1, "deribit", "deribit:a", b' {"a":[1,2.5,"\\u00e9"]} ')
        w.write(T0 + 2, "binance", "binance:a", b'{"lastUpdateId":5,"bids":[],"asks":[]}', "rest",
                url="https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000")
        w.write(T0 + 3, "deribit", "deribit:a", "not json {")
        w.write(T0 + 4, "deribit", "deribit:a", b'{"bad utf8":"\xff"}')
        w.write(T0 + 5, "deribit", "deribit:a", pretty)
        w.write(T0 + 6, "deribit", "deribit:a", "")
    frames = list(read_capture(path))
    assert [(f.ts - T0, f.dir, f.is_json) for f in frames] == [
        (0, "send", True), (1, "recv", True), (2, "rest", True), (3, "recv", False),
        (4, "recv", False), (5, "recv", True), (6, "recv", False)]
    assert frames[1].raw == b'{"a":[1,2.5,"\\u00e9"]}' and frames[1].msg == {"a": [1, 2.5, "é"]}
    assert frames[2].url.endswith("limit=1000") and frames[2].msg["lastUpdateId"] == 5
    assert [f.url for f in frames].count(None) == 6
    assert frames[3].raw == b"not json {" and frames[3].msg is None
    assert frames[4].raw == '{"bad utf8":"\ufffd"}'.encode()
    assert frames[5].msg == {"jsonrpc": "2.0", "id": 7} and b"\n" not in frames[5].raw
    assert frames[6].raw == b""
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if suffix.endswith(".gz") else b'{"')
    assert len(capture_lines(path)) == 8  # header + one line per frame


def test_writer_refuses_bad_direction_and_url(tmp_path: Path) -> None:
    with CaptureWriter(tmp_path / "c.jsonl") as w:
        with pytest.raises(ValueError, match="direction"):
            w.write(T0, "deribit", "s", "{}", "sideways")
        with pytest.raises(ValueError, match="url"):
            w.write(T0, "deribit", "s", "{}", "recv", url="https://x")


def test_msg_is_decoded_lazily_once(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "c.jsonl", [line(frame=b'{"big":12345678901234567890123}')])
    (frame,) = read_capture(path)
    assert frame.msg is frame.msg  # cached
    assert frame.msg == {"big": 12345678901234567890123}  # exact, not a float


def test_streams_filter_reads_only_heads_of_other_streams(tmp_path: Path) -> None:
    """Other streams' lines are skipped on their head alone: a broken frame there is
    neither decoded nor reported."""
    lines = [line(T0, "deribit:a"), line(T0 + 1, "deribit:b", b'{"broken":'),
             line(T0 + 2, "deribit:a", b'{"x":2}'), line(T0 + 3, "deribit:c")]
    path = write_capture(tmp_path / "c.jsonl.gz", lines)
    report = CaptureReport()
    got = list(read_capture(path, ["deribit:a", "deribit:c"], report=report))
    assert [(f.stream, f.ts - T0) for f in got] == [("deribit:a", 0), ("deribit:a", 2),
                                                   ("deribit:c", 3)]
    assert not report.counts
    all_report = CaptureReport()
    assert len(list(read_capture(path, report=all_report))) == 3
    assert all_report.counts == {"json": 1}


def test_list_streams(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    a = write_capture(tmp_path / "run" / "1.jsonl", [line(T0 + 5, "deribit:x"), line(T0 + 6, "deribit:y")])
    b = write_capture(tmp_path / "run" / "2.jsonl.gz", [line(T0 + 9, "deribit:y"),
                                                         b'{"ts":"bad","venue":"d","stream":"z","dir":"recv","msg":1}'])
    (tmp_path / "run" / "notes.txt").write_text("not a capture, not listed")
    streams = list_streams([tmp_path / "run"])
    assert streams == {
        "deribit:x": ("deribit", (a,), T0 + 5),
        "deribit:y": ("deribit", (a, b), T0 + 6),
    }
    bundled = list_streams([RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"])
    assert bundled["coinbase:COINBASE.ws.2"].first_ts == 1786309548174.375
    with pytest.raises(FileNotFoundError):
        list_streams([tmp_path / "missing.jsonl"])


# ------------------------------------------------------------ bad input


BAD_LINES = {
    "ts": [b'{"ts":"1786309548000","venue":"deribit","stream":"s","dir":"recv","msg":{}}',
           b'{"venue":"deribit","stream":"s","dir":"recv","msg":{}}',
           b'{"ts": NaN, "venue": "deribit", "stream": "s", "dir": "recv", "msg": {}}',
           b'{"ts": -Infinity, "venue": "deribit", "stream": "s", "dir": "recv", "msg": {}}',
           b'{"ts":1e20,"venue":"deribit","stream":"s","dir":"recv","msg":{}}',
           b'{"ts":1786309548.0,"venue":"deribit","stream":"s","dir":"recv","msg":{}}',
           b'{"ts":true,"venue":"deribit","stream":"s","dir":"recv","msg":{}}'],
    "venue": [b'{"ts":1786309548000,"stream":"s","dir":"recv","msg":{}}',
              b'{"ts":1786309548000,"venue":7,"stream":"s","dir":"recv","msg":{}}'],
    "stream": [b'{"ts":1786309548000,"venue":"deribit","dir":"recv","msg":{}}',
               b'{"ts":1786309548000,"venue":"deribit","stream":null,"dir":"recv","msg":{}}'],
    "dir": [b'{"ts":1786309548000,"venue":"deribit","stream":"s","msg":{}}',
            b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"sideways","msg":{}}'],
    "url": [b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"rest","url":5,"msg":{}}'],
    "frame": [b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"recv"}',
              b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"recv","msg":1,"raw":"x"}',
              b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"recv","raw":5}'],
    "json": [b'\x1b[31mFAKE log line',
             b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"recv","msg":{"a":}}',
             b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"recv","msg":{"a":1}}}',
             b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"recv","msg":"\\ud800"}'],
    "not_object": [b'[1,2,3]', b'"a string"'],
    "too_deep": [line(frame=b"[" * 5000 + b"]" * 5000)],
}


def test_every_bad_line_kind_is_counted_logged_once_and_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = [line(T0 + i, frame=b'{"n":%d}' % i) for i in range(3)]
    body = [good[0]]
    for lines in BAD_LINES.values():
        body += lines
    body += good[1:]
    path = write_capture(tmp_path / "bad.jsonl", body)
    report = CaptureReport()
    with caplog.at_level(logging.WARNING, logger="lobstream.capture"):
        frames = list(read_capture(path, report=report))
    assert [f.msg for f in frames] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert report.counts == Counter({kind: len(lines) for kind, lines in BAD_LINES.items()})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(BAD_LINES)
    for kind in BAD_LINES:
        assert sum(f"({kind}:" in m for m in messages) == 1, kind
    for m in messages:  # bounded, escaped samples: a hostile line cannot forge log lines
        assert "\n" not in m and "\x1b" not in m and len(m) < 600
    assert any("\\x1b[31mFAKE" in m for m in messages)


def test_deep_frame_from_a_foreign_writer_never_raises_recursion(tmp_path: Path) -> None:
    deep = b'{"ts":1786309548000,"venue":"deribit","stream":"s","dir":"recv","msg":' + b"[" * 100000
    path = write_capture(tmp_path / "deep.jsonl", [deep + b"]" * 100000 + b"}", line()])
    report = CaptureReport()
    assert len(list(read_capture(path, report=report))) == 1
    assert report.counts == {"too_deep": 1}


def test_truncated_last_line_is_skipped_but_a_complete_one_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    full = write_capture(tmp_path / "a.jsonl", [line(T0), line(T0 + 1)])
    data = full.read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[:-10])
    report = CaptureReport()
    with caplog.at_level(logging.WARNING, logger="lobstream.capture"):
        assert [f.ts for f in read_capture(cut, report=report)] == [T0]
    assert report.counts == {"truncated": 1}
    assert "truncated" in caplog.text
    no_newline = tmp_path / "no_newline.jsonl"
    no_newline.write_bytes(data[:-1])
    report = CaptureReport()
    assert [f.ts for f in read_capture(no_newline, report=report)] == [T0, T0 + 1]
    assert not report.counts


def test_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"lobstream_capture":1}\r\n\r\n' + line(T0) + b"\r\n\n" + line(T0 + 1) + b"\r\n")
    assert [f.ts for f in read_capture(path)] == [T0, T0 + 1]


def test_overlong_line_is_skipped_with_bounded_reads(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "MAX_LINE_BYTES", 1000)
    path = write_capture(tmp_path / "long.jsonl", [line(T0), line(T0 + 1, frame=b'"' + b"x" * 5000 + b'"'),
                                                   line(T0 + 2)])
    report = CaptureReport()
    assert [f.ts for f in read_capture(path, report=report)] == [T0, T0 + 2]
    assert report.counts == {"too_long": 1}


def test_gzip_cut_short_yields_every_complete_line(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    src = RECORDINGS / "coinbase_exchange_level2.jsonl.gz"
    data = src.read_bytes()
    everything = list(read_capture(src))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    report = CaptureReport()
    with caplog.at_level(logging.WARNING, logger="lobstream.capture"):
        got = list(read_capture(cut, report=report))
    assert 1000 < len(got) < len(everything)
    assert got == everything[: len(got)]
    assert report.counts["damaged_end"] == 1 and set(report.counts) <= {"damaged_end", "truncated"}
    assert "ends early" in caplog.text


def test_concatenated_gzip_members_read_as_one_capture(tmp_path: Path) -> None:
    path = tmp_path / "two.jsonl.gz"
    first = gzip.compress(b'{"lobstream_capture":1}\n' + line(T0) + b"\n")
    path.write_bytes(first + gzip.compress(line(T0 + 1) + b"\n" + line(T0 + 2) + b"\n"))
    assert [f.ts for f in read_capture(path)] == [T0, T0 + 1, T0 + 2]


def test_not_a_capture_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "fake.jsonl.gz").write_bytes(b"\x1f\x8bnot really gzip at all")
    (tmp_path / "future.jsonl").write_bytes(b'{"lobstream_capture":2}\n')
    (tmp_path / "v2.jsonl").write_bytes(b'{"t":"header","format":2,"exchange":"COINBASE"}\n')
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "bad\nname.jsonl").write_bytes(b"# title\n")
    cases = [REPO / "README.md", tmp_path / "empty.jsonl", tmp_path / "fake.jsonl.gz",
             tmp_path / "future.jsonl", tmp_path / "v2.jsonl", tmp_path / "dir.jsonl",
             tmp_path / "bad\nname.jsonl"]
    for path in cases:
        calls = [read_capture, read_header] + ([] if path.is_dir() else [lambda p: list_streams([p])])
        for call in calls:
            with pytest.raises(NotACaptureError) as err:
                call(path)
            message = str(err.value)
            assert "\n" not in message, message
            assert "not a lobstream capture" in message and "convert" in message
    assert "format 2" in str(pytest.raises(NotACaptureError, read_capture, cases[3]).value)


def test_frame_decode_error_is_the_one_error_of_msg(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "c.jsonl", [line(frame=b'{"x":1e999}')])
    (frame,) = read_capture(path)
    with pytest.raises(FrameDecodeError):
        frame.msg
    assert "1e999" in repr(frame.raw) and "bytes" in repr(frame)


# ------------------------------------------------------------ writer


def test_writer_never_clobbers_and_flushes_the_header_at_open(tmp_path: Path) -> None:
    for name in ("c.jsonl", "c.jsonl.gz"):
        path = tmp_path / name
        w = CaptureWriter(path, source="run 1")
        assert read_header(path)["source"] == "run 1"  # on disk before any frame or close
        w.write(T0, "deribit", "s", "{}")
        w.close()
        before = path.read_bytes()
        with pytest.raises(FileExistsError):
            CaptureWriter(path, source="run 2")
        assert path.read_bytes() == before


def test_write_after_close_is_ignored_from_another_thread(tmp_path: Path) -> None:
    """A socket thread writing while the flow closes the file: no exception, and
    every frame the writer accepted is in the file, in order."""
    path = tmp_path / "c.jsonl.gz"
    w = CaptureWriter(path)
    accepted: List[int] = []
    errors: List[BaseException] = []

    def pump() -> None:
        try:
            for i in range(1_000_000):
                if not w.write(T0 + i, "deribit", "s", b'{"i":%d}' % i):
                    return
                accepted.append(i)
        except BaseException as ex:  # pragma: no cover - the failure being tested for
            errors.append(ex)

    t = threading.Thread(target=pump)
    t.start()
    deadline = time.monotonic() + 10
    while len(accepted) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.close()
    t.join(10)
    assert not errors and not t.is_alive()
    assert [f.msg["i"] for f in read_capture(path)] == accepted
    assert w.write(T0, "deribit", "s", "{}") is False


# ------------------------------------------------------------ recorder


NAME = re.compile(r"^deribit_BTC-PERPETUAL_\d{8}T\d{6}\.\d{3}Z_\d+(_\d{3})?\.jsonl\.gz$")


def test_recorder_new_file_per_run_sorted_in_time_order(tmp_path: Path) -> None:
    names = []
    for run in range(3):
        r = Recorder(tmp_path, "deribit", "deribit:BTC-PERPETUAL", source=f"run {run}")
        r.write(T0 + run, "deribit", "deribit:BTC-PERPETUAL", b'{"run":%d}' % run)
        r.close()
        names.append(r.files[0].name)
        assert r.stats().written == 1 and r.stats().files == 1
    assert all(NAME.match(n) for n in names), names
    assert len(set(names)) == 3 and sorted(names) == names
    files = sorted(tmp_path.iterdir())
    assert [[f.msg["run"] for f in read_capture(p)] for p in files] == [[0], [1], [2]]
    assert [read_header(p)["source"] for p in files] == ["run 0", "run 1", "run 2"]


def test_recorder_rotates_by_size_and_age(tmp_path: Path) -> None:
    r = Recorder(tmp_path / "size", "coinbase", "coinbase:BTC-USD", rotate_bytes=50_000,
                 rotate_seconds=None)
    for i in range(5000):  # 1.1 MB of lines that compress about 2:1
        r.write(T0 + i, "coinbase", "coinbase:BTC-USD",
                b'{"i":%d,"pad":"%s"}' % (i, hashlib.sha256(b"%d" % i).hexdigest().encode() * 3))
    r.close()
    assert r.stats() == RecorderStats(written=5000, pending=0, dropped=0, after_close=0,
                                      files=len(r.files), paused=False)
    assert len(r.files) > 3 and sorted(r.files) == r.files
    got = [f.msg["i"] for p in r.files for f in read_capture(p)]
    assert got == list(range(5000))
    for p in r.files:
        assert p.stat().st_size < 50_000 + 300_000  # the limit, plus at most one chunk
        gzip.decompress(p.read_bytes())  # each file ends with a complete gzip trailer

    r = Recorder(tmp_path / "age", "coinbase", "coinbase:BTC-USD", rotate_bytes=None,
                 rotate_seconds=0.2)
    deadline = time.monotonic() + 10
    i = 0
    while len(r.files) < 3 and time.monotonic() < deadline:
        r.write(T0 + i, "coinbase", "coinbase:BTC-USD", b'{"i":%d}' % i)
        i += 1
        time.sleep(0.01)
    r.close()
    assert len(r.files) >= 3
    assert [f.msg["i"] for p in r.files for f in read_capture(p)] == list(range(i))


def test_recorder_flushes_within_a_second_without_close(tmp_path: Path) -> None:
    r = Recorder(tmp_path, "deribit", "deribit:x")
    r.write(T0, "deribit", "deribit:x", b'{"first":1}')
    path = r.path
    assert path is not None
    deadline = time.monotonic() + 10
    got: List[CaptureFrame] = []
    quiet = CaptureReport(logger=None)  # the open gzip has no trailer yet
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
        got = list(read_capture(path, report=quiet))
    assert [f.msg for f in got] == [{"first": 1}]
    assert r.stats().pending == 0
    r.close()
    r.write(T0 + 1, "deribit", "deribit:x", b"{}")
    assert r.stats().after_close == 1 and r.stats().written == 1


def test_recorder_close_from_another_thread_keeps_the_tail(tmp_path: Path) -> None:
    r = Recorder(tmp_path, "deribit", "deribit:x")
    stop = threading.Event()
    errors: List[BaseException] = []
    sent = [0]

    def socket_thread() -> None:
        try:
            while not stop.is_set() and sent[0] < 1_000_000:
                r.write(T0 + sent[0], "deribit", "deribit:x", b'{"i":%d}' % sent[0])
                sent[0] += 1
        except BaseException as ex:  # pragma: no cover - the failure being tested for
            errors.append(ex)

    t = threading.Thread(target=socket_thread)
    t.start()
    deadline = time.monotonic() + 10
    while sent[0] < 5000 and time.monotonic() < deadline:
        time.sleep(0.01)
    r.close()  # the SIGTERM path: close while the socket thread still delivers
    time.sleep(0.05)
    stop.set()
    t.join(10)
    stats = r.stats()
    assert not errors and stats.dropped == 0 and stats.pending == 0
    assert stats.written + stats.after_close == sent[0]
    got = [f.msg["i"] for p in r.files for f in read_capture(p)]
    assert got == list(range(stats.written))


def test_recorder_into_a_file_pauses_without_raising(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "not_a_dir"
    target.write_text("x")
    r = Recorder(target, "deribit", "deribit:x", retry_seconds=0.01)
    with caplog.at_level(logging.ERROR, logger="lobstream.recorder"):
        for i in range(5):
            r.write(T0 + i, "deribit", "deribit:x", b"{}")
            time.sleep(0.02)  # past the retry interval: each frame retries, fails again
    r.close()
    assert r.stats().dropped == 5 and r.stats().written == 0 and r.stats().files == 0
    (message,) = [rec.getMessage() for rec in caplog.records]  # logged once per pause
    assert message.startswith(f"recording to {target} paused: Not a directory; the feed continues")
    assert target.read_text() == "x"


def test_check_record_dir(tmp_path: Path) -> None:
    assert check_record_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert (tmp_path / "new" / "dir").is_dir() and not list((tmp_path / "new" / "dir").iterdir())
    (tmp_path / "file").write_text("x")
    for bad, why in ((tmp_path / "file", "not a directory"),
                     (tmp_path / "file" / "sub", "cannot create")):
        with pytest.raises(RecordDirError, match=why) as err:
            check_record_dir(bad)
        assert "\n" not in str(err.value) and str(bad) in str(err.value)


# ------------------------------------------------------------ safe names


def test_safe_name_examples() -> None:
    assert safe_name("BTC-USD") == "BTC-USD"
    assert safe_name("ETHUSD_PERP") == "ETHUSD_PERP"
    assert safe_name("a/b") == "a%2Fb"
    assert safe_name("..") == "%2E."
    assert safe_name("x\ny\x00") == "x%0Ay%00"
    assert safe_name("") == "%"
    assert safe_name("é") == "%C3%A9"
    long = safe_name("x" * 500)
    assert len(long) == 80 and long.startswith("x" * 71 + "~")
    assert long != safe_name("x" * 499)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30))
def test_safe_name_is_a_safe_injective_file_name(a: str, b: str) -> None:
    sa = safe_name(a)
    assert re.fullmatch(r"[A-Za-z0-9_.%~-]{1,80}", sa)
    assert not sa.startswith(".") and "/" not in sa
    assert sa == safe_name(a)
    if a != b:
        assert sa != safe_name(b)


def test_recorder_streams_are_safe_file_names(tmp_path: Path) -> None:
    r = Recorder(tmp_path, "deribit", "deribit:../../etc/passwd\n")
    r.write(T0, "deribit", "deribit:../../etc/passwd\n", "{}")
    r.close()
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("deribit_%2E.%2F..%2Fetc%2Fpasswd%0A_")
    assert [f.stream for f in read_capture(path)] == ["deribit:../../etc/passwd\n"]


def test_bundled_first_lines_are_in_lobstream_layout() -> None:
    """The fast path's layout is what the writer produces (so these read fast)."""
    for name in BUNDLED:
        for text in islice(capture_lines(RECORDINGS / name), 1, 50):
            assert text.startswith(b'{"ts":') and b',"venue":"' in text[:40], name

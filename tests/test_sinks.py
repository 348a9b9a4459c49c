"""Sinks in-process: console lines and their escaping, JSON-lines serialisation,
and the per-product JSONL files (names from the record, modes, bounded open
files, partial-tail repair)."""

import contextlib
import io
import logging
import os
import unicodedata

import orjson
from hypothesis import given, settings, strategies as st

from sinks import SINKS
from sinks.console import ConsoleSink, format_line, printable
from sinks.jsonl import JsonlSink
from sinks.records import SKIPPED, to_lines

# 2026-08-09T21:05:52.101Z = 1786309552.101 s (1786233600 for the day + 21:05:52)
TS = 1786309552101.0


def _alert():
    return {"type": "alert", "venue": "deribit", "product": "ETH-9APR21-1950-C", "ts_recv": TS,
            "kind": "spread", "spread_bps": 1142.857,
            "detail": "spread 1142.86 bps > 10 bps (bid 0.0335 ask 0.0375)"}


def _status(state="invalid", reason="gap", detail="sequence_num jumped from 14 to 17",
            product="ETH-USD", ts=1786309553377.9, venue="coinbase"):
    return {"type": "status", "venue": venue, "product": product, "ts_recv": ts,
            "state": state, "reason": reason, "detail": detail}


def _summary(product, n, venue="coinbase"):
    return {"type": "summary", "venue": venue, "product": product, "ts_recv": TS + n,
            "best_bid": 65083.66, "best_ask": 65083.67, "spread_bps": 0.0015, "n": n,
            "note": "a \"quoted\" value\nwith a newline"}


def test_console_alert_line():
    assert format_line(_alert()) == (
        "2026-08-09T21:05:52.101Z  SPREAD   deribit:ETH-9APR21-1950-C  "
        "spread 1142.86 bps > 10 bps (bid 0.0335 ask 0.0375)\n")


def test_console_status_lines():
    # milliseconds are truncated, not rounded: .377900 -> .377
    assert format_line(_status()) == (
        "2026-08-09T21:05:53.377Z  INVALID  coinbase:ETH-USD  gap: sequence_num jumped from 14 to 17\n")
    assert format_line(_status("synced", "snapshot", "18764 bids, 27236 asks", "BTC-USD",
                               1786309548848.96)) == (
        "2026-08-09T21:05:48.848Z  SYNCED   coinbase:BTC-USD  snapshot: 18764 bids, 27236 asks\n")


def test_console_cannot_be_forged():
    forged = _status(detail="x\n2026-08-09T21:05:53.377Z  SYNCED   coinbase:ETH-USD  snapshot: ok\r\x1b[2K",
                     product="ETH-USD\n")
    line = format_line(forged)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert line == ("2026-08-09T21:05:53.377Z  INVALID  coinbase:ETH-USD\\x0a  gap: x\\x0a"
                    "2026-08-09T21:05:53.377Z  SYNCED   coinbase:ETH-USD  snapshot: ok\\x0d\\x1b[2K\n")
    # a backslash is escaped too, so "\x0a" in the output is always an escaped newline
    assert printable("a\\x0a\u2028\u202e") == "a\\\\x0a\\u2028\\u202e"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "venue", "product", "kind", "detail", "state",
                                        "reason", "ts_recv", "extra"]),
                       st.one_of(st.text(), st.integers(), st.floats(), st.none(),
                                 st.sampled_from(["alert", "status", "trade"]))))
def test_console_any_record_is_one_printable_line(rec):
    line = format_line(rec)
    assert line.endswith("\n") and line.count("\n") == 1
    # nothing a terminal or log reader takes as a line break, control or reordering
    assert not [ch for ch in line[:-1] if unicodedata.category(ch) in ("Cc", "Zl", "Zp")
                or unicodedata.bidirectional(ch) in _BIDI_CONTROLS], repr(line)


_BIDI_CONTROLS = ("LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI")


def test_console_other_types_and_broken_fields():
    trade = {"type": "trade", "venue": "coinbase", "product": "BTC-USD", "ts_recv": TS,
             "price": 65083.66, "size": 0.5, "side": "buy"}
    assert format_line(trade) == (
        "2026-08-09T21:05:52.101Z  TRADE    coinbase:BTC-USD  price=65083.66 size=0.5 side=buy\n")
    assert format_line({"type": "status", "ts_recv": "soon"}) == (
        "????-??-??T??:??:??.???Z  NONE     None:None  None: None\n")
    assert format_line({"type": "alert", "ts_recv": 1e300, "kind": 3}).startswith(
        "????-??-??T??:??:??.???Z  3 ")


def test_console_sink_writes_to_a_redirected_stdout():
    # Callers (the soak test) collect the console by redirecting sys.stdout.
    with contextlib.redirect_stdout(io.StringIO()) as out:
        part = ConsoleSink().build("console", 0, 1)
        part.write_batch([("k", _alert()), ("k", _status(detail="lone \ud800 surrogate"))])
    assert out.getvalue().splitlines() == [
        format_line(_alert())[:-1],
        "2026-08-09T21:05:53.377Z  INVALID  coinbase:ETH-USD  gap: lone \\ud800 surrogate"]


def test_to_lines_round_trip():
    recs = [_summary("BTC-USD", 1), _alert(), _status()]
    data = to_lines(recs)
    assert isinstance(data, bytes)
    assert data.endswith(b"\n") and data.count(b"\n") == 3
    assert [orjson.loads(line) for line in data.splitlines()] == recs
    assert to_lines([]) == b""


def test_to_lines_skips_what_cannot_be_json_and_keeps_the_rest(caplog):
    good = _summary("BTC-USD", 1)
    surrogate = _summary("BTC-USD\ud800", 2)
    huge = _summary("BTC-USD", 3) | {"n": 1 << 70}
    odd = _summary("BTC-USD", 4) | {"when": object, 7: "int key"}
    before = dict(SKIPPED)
    with caplog.at_level(logging.WARNING, "lobstream.sinks"):
        data = to_lines([good, surrogate, huge, good, huge, odd])
    lines = [orjson.loads(line) for line in data.splitlines()]
    assert lines[:2] == [good, good]
    assert lines[2]["when"] == repr(object) and lines[2]["7"] == "int key"
    assert sum(SKIPPED.values()) - sum(before.values()) == 3
    # one line per reason, however many records had it
    assert len([r for r in caplog.records if "cannot be written as JSON" in r.message]) <= 2


def _read(path):
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


def test_jsonl_sink_per_product_files_and_append(tmp_path):
    out = tmp_path / "out" / "nested"
    sink = JsonlSink(out)
    part = sink.build("s", 0, 1)
    assert out.is_dir()
    # keys are routing keys, not venue:product: names come from the records
    btc = [(f"coinbase:BTC-USD#{i}", _summary("BTC-USD", i)) for i in range(3)]
    eth = [("anything", _summary("ETH-USD", i)) for i in range(2)]
    opt = [("deribit:BTC-25MAR22-400000-C#7",
            _status(product="BTC-25MAR22-400000-C", venue="deribit"))]
    part.write_batch([btc[0], eth[0], btc[1], opt[0]])
    # every batch is written as whole lines, readable before close
    assert _read(out / "coinbase_BTC-USD.jsonl") == [r for _, r in btc[:2]]
    part.write_batch([eth[1], btc[2]])
    part.close()
    assert sorted(p.name for p in out.iterdir()) == [
        "coinbase_BTC-USD.jsonl", "coinbase_ETH-USD.jsonl", "deribit_BTC-25MAR22-400000-C.jsonl"]
    assert _read(out / "coinbase_BTC-USD.jsonl") == [r for _, r in btc]
    assert _read(out / "coinbase_ETH-USD.jsonl") == [r for _, r in eth]
    assert _read(out / "deribit_BTC-25MAR22-400000-C.jsonl") == [r for _, r in opt]

    # a second run (new build) appends instead of truncating
    part2 = JsonlSink(out).build("s", 0, 1)
    more = ("coinbase:BTC-USD", _summary("BTC-USD", 99))
    part2.write_batch([more])
    part2.close()
    assert _read(out / "coinbase_BTC-USD.jsonl") == [r for _, r in btc] + [more[1]]
    assert _read(out / "coinbase_ETH-USD.jsonl") == [r for _, r in eth]


def test_jsonl_sink_close_is_idempotent_and_reopens(tmp_path):
    part = JsonlSink(tmp_path).build("s", 0, 1)
    part.write_batch([("k", _summary("BTC-USD", 1))])
    part.close()
    part.close()
    part.write_batch([("k", _summary("BTC-USD", 2))])
    part.close()
    assert [r["n"] for r in _read(tmp_path / "coinbase_BTC-USD.jsonl")] == [1, 2]


def test_jsonl_replace_truncates_once_per_run(tmp_path):
    (tmp_path / "coinbase_BTC-USD.jsonl").write_bytes(b'{"old": 1}\n')
    (tmp_path / "coinbase_ETH-USD.jsonl").write_bytes(b'{"old": 2}\n')
    # one open file at a time: every switch of product closes one file and reopens
    # the other, which must append to what this run wrote, not truncate it again
    part = JsonlSink(tmp_path, mode="replace", max_open=1).build("s", 0, 1)
    for n in range(4):
        part.write_batch([("k", _summary("BTC-USD", n))])
        part.write_batch([("k", _summary("ETH-USD", n))])
    part.close()
    assert [r["n"] for r in _read(tmp_path / "coinbase_BTC-USD.jsonl")] == [0, 1, 2, 3]
    assert [r["n"] for r in _read(tmp_path / "coinbase_ETH-USD.jsonl")] == [0, 1, 2, 3]
    assert part.files.opens == 8


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_jsonl_open_files_are_bounded(tmp_path):
    part = JsonlSink(tmp_path, max_open=8).build("s", 0, 1)
    base = _open_fds()
    for rnd in range(3):
        for first in range(0, 200, 50):
            part.write_batch([("k", _summary(f"P{p}", rnd)) for p in range(first, first + 50)])
            assert part.files.open_files <= 8
            assert _open_fds() - base <= 8
    part.close()
    assert _open_fds() <= base
    assert len(list(tmp_path.iterdir())) == 200
    for p in (0, 77, 199):
        assert [r["n"] for r in _read(tmp_path / f"coinbase_P{p}.jsonl")] == [0, 1, 2]


def test_jsonl_odd_products_get_safe_files(tmp_path):
    odd = ["BTC/USD", "..", ".", "../../etc/passwd", "a\x00b", "ETH\nUSD", "x" * 300, "ü€😀",
           "", None, 42, "a\ud800b"]
    part = JsonlSink(tmp_path / "out").build("s", 0, 1)
    part.write_batch([("k", _summary(p, i)) for i, p in enumerate(odd)]
                     + [("k", {"type": "summary", "n": 99})])  # no venue, no product at all
    part.close()
    files = sorted((tmp_path / "out").iterdir())
    assert [p.parent for p in files] == [tmp_path / "out"] * len(files)
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]
    # one file each ("a\ud800b" cannot be JSON: skipped; 42 and None share with nothing)
    assert len(files) == len(odd)
    written = sorted(r["n"] for f in files if f.stat().st_size for r in _read(f))
    assert written == [i for i, p in enumerate(odd) if p != "a\ud800b"] + [99]


def test_jsonl_cuts_a_partial_last_line_left_by_an_earlier_run(tmp_path, caplog):
    path = tmp_path / "coinbase_BTC-USD.jsonl"
    whole = orjson.dumps(_summary("BTC-USD", 0)) + b"\n"
    path.write_bytes(whole + b'{"type": "summ')
    part = JsonlSink(tmp_path).build("s", 0, 1)
    with caplog.at_level(logging.WARNING, "lobstream.sinks"):
        part.write_batch([("k", _summary("BTC-USD", 1))])
    part.close()
    assert [r["n"] for r in _read(path)] == [0, 1]
    assert any("partial line (14 bytes" in r.message for r in caplog.records)
    # a file that is nothing but a partial line is emptied
    path.write_bytes(b"x" * 200_000)
    part = JsonlSink(tmp_path).build("s", 0, 1)
    part.write_batch([("k", _summary("BTC-USD", 2))])
    part.close()
    assert [r["n"] for r in _read(path)] == [2]


def test_jsonl_options_fail_at_start_with_one_line(tmp_path):
    def error(options):
        try:
            SINKS["jsonl"](options)
        except ValueError as ex:
            return str(ex)
        raise AssertionError("accepted")

    assert error({"jsonl_dir": str(tmp_path), "jsonl_mode": "overwrite"}) == (
        "jsonl_mode='overwrite'; valid choices: append, replace")
    assert error({"jsonl_dir": str(tmp_path), "jsonl_max_open": 0}) == (
        "jsonl_max_open=0: expected an integer >= 1")
    assert error({"jsonl_dir": str(tmp_path), "jsonl_max_open": True}) == (
        "jsonl_max_open=True: expected an integer >= 1")
    (tmp_path / "f").write_text("")
    assert error({"jsonl_dir": str(tmp_path / "f")}) == (
        f"jsonl_dir: output directory '{tmp_path / 'f'}' is a file, not a directory")
    sink = SINKS["jsonl"]({"jsonl_dir": str(tmp_path / "new"), "jsonl_mode": "replace"})
    assert (sink.mode, sink.max_open, (tmp_path / "new").is_dir()) == ("replace", 64, True)

"""Sinks: console lines, JSON-lines serialisation and the per-product JSONL files."""

import orjson

from sinks.console import format_line
from sinks.jsonl import JsonlSink
from sinks.records import to_lines

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


def _summary(product, n):
    return {"type": "summary", "venue": "coinbase", "product": product, "ts_recv": TS + n,
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


def test_to_lines_round_trip():
    items = [("coinbase:BTC-USD", _summary("BTC-USD", 1)), ("deribit:X", _alert()),
             ("coinbase:ETH-USD", _status())]
    data = to_lines(items)
    assert isinstance(data, bytes)
    assert data.endswith(b"\n") and data.count(b"\n") == 3
    assert [orjson.loads(line) for line in data.splitlines()] == [rec for _, rec in items]
    assert to_lines([]) == b""


def _read(path):
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


def test_jsonl_sink_per_product_files_and_append(tmp_path):
    out = tmp_path / "out" / "nested"
    sink = JsonlSink(out)
    part = sink.build("s", 0, 1)
    assert out.is_dir()
    btc = [("coinbase:BTC-USD", _summary("BTC-USD", i)) for i in range(3)]
    eth = [("coinbase:ETH-USD", _summary("ETH-USD", i)) for i in range(2)]
    opt = [("deribit:BTC-25MAR22-400000-C",
            _status(product="BTC-25MAR22-400000-C", venue="deribit"))]
    part.write_batch([btc[0], eth[0], btc[1], opt[0]])
    # every batch is flushed as whole lines, readable before close
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
    part.write_batch([("coinbase:BTC-USD", _summary("BTC-USD", 1))])
    part.close()
    part.close()
    part.write_batch([("coinbase:BTC-USD", _summary("BTC-USD", 2))])
    part.close()
    assert [r["n"] for r in _read(tmp_path / "coinbase_BTC-USD.jsonl")] == [1, 2]

"""Binance spot, USD-M and COIN-M: the parser and the REST-snapshot sync on real recordings.

The bundled captures are time windows of hftbacktest's and cryptofeed's real
recordings, each with its REST depth snapshot as a ``rest`` frame where it was
recorded. Every ``bookTicker`` whose ``u`` equals a diff's final ``u`` must match
the book's best bid and ask exactly: an independent check from the exchange itself.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

import orjson
import pytest
from bytewax.testing import run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow
from sources.capture.format import read_capture
from sources.feed.feed import MAX_BUFFERED, Feed
from sources.feed.reporting import BadInput
from sources.venues import get_venue
from state.events import SNAPSHOT, UPDATE, BookEvent, BookStatus
from state.product import ProductState
from tests.helpers import read_dir

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
CAPTURES = {
    "spot": RECORDINGS / "binance_spot_btcusdt.jsonl.gz",
    "usdm": RECORDINGS / "binance_usdm_ethusdt.jsonl.gz",
    "coinm": RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz",
    "spot10": RECORDINGS / "binance_spot_10pairs.jsonl.gz",
}


def replay_books(path: Path) -> Tuple[Feed, Dict[str, ProductState], List[Tuple[int, float, float]],
                                      Dict[Tuple[str, int], Tuple[float, float]], int]:
    """Feed a capture through one Feed and one ProductState per product, as the
    flow does; collect bookTickers and the book's top after every applied diff."""
    frames = list(read_capture(path))
    feed = Feed(get_venue(frames[0].venue), None, BadInput(), frames[0].stream)
    states: Dict[str, ProductState] = {}
    tops: Dict[Tuple[str, int], Tuple[float, float]] = {}
    tickers: List[Tuple[str, int, float, float]] = []
    crossed = 0
    for f in frames:
        out: list = []
        if f.dir == "rest":
            feed.on_rest(f.url, f.raw, f.ts, out)
        elif f.dir == "recv":
            if b"@bookTicker" in f.raw[:60]:
                t = orjson.loads(f.raw)["data"]
                tickers.append((t["s"], t["u"], float(t["b"]), float(t["a"])))
                continue
            feed.on_frame(f.raw, f.ts, out)
        for _, item in out:
            state = states.setdefault(item.product, ProductState())
            records = state.on_item(item, 10, 1e9)
            crossed += sum(1 for r in records if r["type"] == "alert"
                           and r["kind"] in ("crossed", "locked"))
            if isinstance(item, BookEvent) and state.valid:
                tops[(item.product, item.seq)] = (state.top[0], state.top[2])
    return feed, states, tickers, tops, crossed


@pytest.mark.parametrize("name", list(CAPTURES))
def test_every_book_syncs_and_matches_the_venues_own_ticker(name):
    feed, states, tickers, tops, crossed = replay_books(CAPTURES[name])
    assert crossed == 0
    assert feed.counts["gaps"] == 0 and feed.counts["stale_snapshots"] == 0
    assert states and all(s.valid for s in states.values())
    assert feed.counts["snapshots"] == len(states)
    checked = [(s, u, b, a) for s, u, b, a in tickers if (s, u) in tops]
    mismatched = [(s, u, b, a, tops[(s, u)]) for s, u, b, a in checked if tops[(s, u)] != (b, a)]
    assert mismatched == []
    if name != "spot10":  # the 10-pair file's bookTickers rarely share a diff's u
        assert len(checked) > 20


def test_spot_recording_counts_match_the_independent_verification():
    """SOURCES.md: the spot file's diffs before the snapshot are dropped by the spot
    rule (2 with u <= lastUpdateId) and every later one chains (0 gaps)."""
    feed, states, _, _, _ = replay_books(CAPTURES["spot"])
    assert feed.counts["dropped_stale"] == 2
    assert list(states) == ["BTCUSDT"]


def _diffs(path: Path):
    frames = list(read_capture(path))
    rest = next(f for f in frames if f.dir == "rest")
    diffs = [f for f in frames if f.dir == "recv" and b'"depthUpdate"' in f.raw]
    return frames[0], rest, diffs


def test_a_snapshot_older_than_the_buffered_diffs_is_fetched_again():
    """Buffered diffs that do not chain onto the snapshot: nothing is emitted, the
    diffs stay buffered, a new snapshot is requested, and a newer one syncs."""
    first, rest, diffs = _diffs(CAPTURES["usdm"])
    venue = get_venue(first.venue)
    snap_id = orjson.loads(rest.raw)["lastUpdateId"]
    later = [d for d in diffs if orjson.loads(d.raw)["data"]["U"] > snap_id + 1000]
    feed = Feed(venue, ["ETHUSDT"], BadInput(), first.stream)
    feed.connected(0.0)
    out: list = []
    for d in later[:50]:
        feed.on_frame(d.raw, d.ts, out)
    assert feed.requests == ["ETHUSDT"] and out == []
    feed.requests.clear()
    feed.on_rest(rest.url, rest.raw, rest.ts, out)  # older than every buffered diff
    assert out == [] and feed.counts["stale_snapshots"] == 1
    assert feed.requests == ["ETHUSDT"]  # asked again, diffs kept
    assert len(feed.books["ETHUSDT"].buffer) == 50
    # A snapshot inside the first buffered diff (futures: U <= lastUpdateId <= u):
    # it and all 50 diffs apply.
    first_diff = orjson.loads(later[0].raw)["data"]
    newer = orjson.dumps({"lastUpdateId": first_diff["U"], "E": first_diff["E"],
                          "T": first_diff["T"], "bids": [["2600.00", "1.0"]],
                          "asks": [["2700.00", "1.0"]]})
    feed.on_rest(rest.url, newer, rest.ts, out)
    assert [e.kind for _, e in out] == [SNAPSHOT] + [UPDATE] * 50
    assert feed.books["ETHUSDT"].buffer is None


def test_a_gap_refetches_that_symbol_alone_with_its_diffs_buffered():
    frames = list(read_capture(CAPTURES["spot10"]))
    venue = get_venue("binance")
    feed = Feed(venue, None, BadInput(), frames[0].stream)
    out: list = []
    for f in frames:
        if f.dir == "rest":
            feed.on_rest(f.url, f.raw, f.ts, out)
        elif f.dir == "recv":
            feed.on_frame(f.raw, f.ts, out)
    synced = [p for p, s in feed.books.items() if s.sync.synced]
    assert len(synced) == 10
    victim = "ZILUSDT"
    # Drop one of the victim's diffs: the next one does not chain.
    diff = next(f for f in frames if f.dir == "recv" and b'"s":"ZILUSDT"' in f.raw
                and b"depthUpdate" in f.raw)
    d = orjson.loads(diff.raw)
    last = feed.books[victim].sync.last
    gap = dict(d, data=dict(d["data"], U=last + 5, u=last + 9))
    out = []
    feed.on_frame(orjson.dumps(gap), diff.ts, out)
    assert [(s.product, s.reason) for _, s in out if isinstance(s, BookStatus)] == [(victim, "gap")]
    assert feed.requests == [victim]
    assert list(feed.books[victim].buffer) and len(feed.books[victim].buffer) == 1
    assert all(s.sync.synced for p, s in feed.books.items() if p != victim)


def test_the_buffer_is_bounded():
    first, rest, diffs = _diffs(CAPTURES["coinm"])
    feed = Feed(get_venue(first.venue), None, BadInput(), first.stream)
    out: list = []
    raw = diffs[0].raw
    d = orjson.loads(raw)["data"]
    for i in range(MAX_BUFFERED + 10):
        ev = dict(d, U=d["U"] + 2 * i, u=d["U"] + 2 * i + 1, pu=d["U"] + 2 * i - 1)
        feed.on_frame(orjson.dumps({"stream": "ethusd_perp@depth@0ms", "data": ev}), 0.0, out)
    assert len(feed.books["ETHUSD_PERP"].buffer) == MAX_BUFFERED
    assert feed.counts["dropped_buffer"] == 10


def test_replay_through_the_flow_for_all_three_markets(tmp_path):
    paths = [str(CAPTURES[n]) for n in ("spot", "usdm", "coinm", "spot10")]
    run_main(build_flow(Config(replay=paths, jsonl_dir=str(tmp_path))))
    files = read_dir(tmp_path)
    assert {"binance_BTCUSDT.jsonl", "binance_usdm_ETHUSDT.jsonl",
            "binance_coinm_ETHUSD_PERP.jsonl"} <= set(files)
    assert len(files) == 13
    assert sum(1 for recs in files.values() if any(r["type"] == "trade" for r in recs)) >= 10
    for name, recs in files.items():
        kinds = Counter(r["type"] for r in recs)
        statuses = [r for r in recs if r["type"] == "status"]
        assert [s["state"] for s in statuses] == ["synced"], name
        assert (kinds["bar"] > 0) == (kinds["trade"] > 0), name
        summaries = [r for r in recs if r["type"] == "summary"]
        assert all(s["bid_px"] < s["ask_px"] for s in summaries if s["ask_px"])
        # seq is the diff's final update id u, rising
        seqs = [s["seq"] for s in summaries]
        assert seqs == sorted(seqs)


@pytest.mark.parametrize("frame,kind", [
    (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,'
     b'"s":"BTCUSDT","U":"5","u":9,"b":[],"a":[]}}', None),
    (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,'
     b'"s":"BTCUSDT","U":9,"u":5,"b":[],"a":[]}}', "bad_seq"),
    (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,'
     b'"s":"BTCUSDT","U":5,"u":9,"b":[["1_00","1"]],"a":[]}}', "bad_level"),
    (b'{"stream":"btcusdt@depth@100ms","data":{"e":"mystery"}}', "unknown_type"),
    (b'{"result":null,"id":[1]}', "bad_reply"),
    (b'{"code":2,"msg":"Invalid request: unknown variant","id":3}', None),
    (b'{"stream":"btcusdt@depth@100ms","data":{"e":"serverShutdown","E":1723161255208}}', None),
], ids=["string_U_coerced", "U_above_u", "underscore_number", "unknown_event", "list_id",
        "error_reply", "server_shutdown"])
def test_untrusted_frames(frame, kind):
    feed = Feed(get_venue("binance"), ["BTCUSDT"], BadInput())
    feed.connected(0.0)
    feed.on_frame(frame, 1.0, [])
    bad = {k[4:]: n for k, n in feed.counts.items() if k.startswith("bad_")}
    assert bad == ({kind: 1} if kind else {})
    if b"serverShutdown" in frame:
        assert feed.reconnect


def test_subscribe_messages_and_snapshot_requests():
    spot, usdm = get_venue("binance"), get_venue("binance_usdm")
    (msg,) = spot.protocol({"speed": "100ms"}).open(["BTCUSDT", "ETHUSDT"])
    assert msg["method"] == "SUBSCRIBE"
    assert msg["params"] == ["btcusdt@depth@100ms", "btcusdt@aggTrade",
                             "ethusdt@depth@100ms", "ethusdt@aggTrade"]
    assert usdm.protocol({"speed": "250ms"}).open(["ETHUSDT"])[0]["params"] == [
        "ethusdt@depth", "ethusdt@trade"]  # aggTrade is /market-tier on USD-M
    assert usdm.protocol({"speed": "0ms", "trades": "off"}).open(["ETHUSDT"])[0]["params"] == [
        "ethusdt@depth@0ms"]
    coinm = get_venue("binance_coinm").protocol({})
    assert coinm.open(["ETHUSD_PERP"])[0]["params"] == [
        "ethusd_perp@depth@100ms", "ethusd_perp@aggTrade", "ethusd_perp@markPrice@1s"]
    assert spot.protocol({}).resubscribe("BTCUSDT") == []  # resync is a REST snapshot
    url, weight = spot.snapshot_request("https://api.binance.com", "BTCUSDT",
                                        {"snapshot_limit": 5000})
    assert (url, weight) == ("https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5000", 250)
    url, weight = usdm.snapshot_request("https://fapi.binance.com", "ETHUSDT",
                                        {"snapshot_limit": 1000})
    assert (url, weight) == ("https://fapi.binance.com/fapi/v1/depth?symbol=ETHUSDT&limit=1000", 20)
    assert usdm.default_url.endswith("/public/stream")  # depth is /public-tier since 2026

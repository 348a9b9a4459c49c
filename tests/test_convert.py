"""Tests for sources.capture.convert and for the recordings bundled in recordings/.

Three groups: the bundled recordings checked on their own (they ship with the
repo, so these always run); the converter on files that need nothing else (the
bundled recordings written back out in a recorder's own format, and small files in
those formats); and the converter on the original recorder files in
../shared/data, which only some checkouts have (those tests skip without it).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Dict, List, Optional

import orjson
import pytest

from sources.capture.convert import ConvertError, Progress, convert, main
from sources.capture.format import CaptureFrame, read_capture
from sources.capture.inputs import FORMATS
from sources.capture.inputs.common import base_name
from sources.capture.inputs.ssc2ce import exchange_stamp

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "recordings"
SHARED = REPO.parent / "shared" / "data"
OLD_BUNDLED = ["coinbase_advanced_btc_eth.jsonl.gz", "deribit_options.jsonl.gz",
               "deribit_gap.jsonl", "coinbase_exchange_level2.jsonl.gz"]
BINANCE_BUNDLED = {  # file -> (venue, stream, diffs applied after sync, symbols)
    "binance_spot_btcusdt.jsonl.gz": ("binance", "binance:btcusdt_20240808", 597, 1),
    "binance_usdm_ethusdt.jsonl.gz": ("binance_usdm", "binance_usdm:ethusdt_20240808", 380, 1),
    "binance_coinm_ethusd_perp.jsonl.gz": ("binance_coinm", "binance_coinm:ethusd_perp_20240808",
                                           2615, 1),
    "binance_spot_10pairs.jsonl.gz": ("binance", "binance:BINANCE-b38f7c", 2454, 10),
}


def frames(path: Path) -> List[CaptureFrame]:
    return list(read_capture(path))


def recv(path: Path) -> List[CaptureFrame]:
    return [f for f in read_capture(path) if f.dir == "recv"]


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data (original recorder files) is not available")
    return SHARED


def write_slice(src: Path, dst: Path, n: int) -> Path:
    """Copy the first ``n`` lines of a real recorder file, byte for byte."""
    with open(src, "rb") as f:
        dst.write_bytes(b"".join(islice(f, n)))
    return dst


def as_hftbacktest(capture: Path, dst: Path, members: int = 1) -> Path:
    """A bundled Binance capture written back out in hftbacktest's own format
    (``<local ns> <frame>`` lines, gzip, optionally as several gzip members)."""
    lines = [b"%d %s\n" % (round(f.ts * 1e6), f.raw) for f in read_capture(capture)]
    step = -(-len(lines) // members)
    dst.write_bytes(b"".join(gzip.compress(b"".join(lines[i:i + step]))
                             for i in range(0, len(lines), step)))
    return dst


def kind(frame: CaptureFrame) -> str:
    """depthUpdate / trade / aggTrade / bookTicker / snapshot, from a Binance frame."""
    if frame.dir == "rest":
        return "snapshot"
    stream = frame.msg.get("stream", "")
    return stream.split("@", 1)[1].split("@")[0].replace("depth", "depthUpdate")


# ------------------------------------------------------------ bundled recordings


def test_bundled_files_are_small_captures() -> None:
    total = 0
    for name in OLD_BUNDLED + list(BINANCE_BUNDLED):
        path = RECORDINGS / name
        size = path.stat().st_size
        assert size < (5_000_000 if name in OLD_BUNDLED else 400_000), name
        assert frames(path), name
        total += size
    assert total < 3_000_000
    assert (RECORDINGS / "PROVENANCE.md").is_file()


def test_bundled_coinbase_advanced_trade() -> None:
    all_frames = frames(RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz")
    assert Counter(f.dir for f in all_frames) == {"recv": 1030, "send": 5}
    assert {f.stream for f in all_frames} == {"coinbase:COINBASE.ws.2"}
    received = [f.msg for f in all_frames if f.dir == "recv"]
    assert [m["sequence_num"] for m in received] == list(range(1030))

    snapshots: Dict[str, list] = {}
    update_sides: Counter = Counter()
    for m in received:
        if m["channel"] != "l2_data":
            continue
        for event in m["events"]:
            if event["type"] == "snapshot":
                snapshots[event["product_id"]] = event["updates"]
            else:
                update_sides.update(u["side"] for u in event["updates"])
    assert {p: len(levels) for p, levels in snapshots.items()} == {"BTC-USD": 46000,
                                                                  "ETH-USD": 23334}
    snapshot_sides = Counter(u["side"] for levels in snapshots.values() for u in levels)
    assert set(snapshot_sides) == {"bid", "offer"}  # never "ask"
    assert snapshot_sides["offer"] == 43635
    assert set(update_sides) == {"bid", "offer"}


def test_bundled_deribit_gap_fixture_has_exactly_one_gap() -> None:
    received = [f.msg for f in recv(RECORDINGS / "deribit_gap.jsonl")]
    assert len(received) == 6
    books = [m["params"]["data"] for m in received if "params" in m]
    snapshot, changes = books[0], books[1:]
    assert "prev_change_id" not in snapshot
    assert (len(snapshot["bids"]), len(snapshot["asks"])) == (371, 305)
    previous = [snapshot["change_id"]] + [c["change_id"] for c in changes[:-1]]
    mismatches = [c for c, prev in zip(changes, previous) if c["prev_change_id"] != prev]
    assert len(mismatches) == 1


def test_bundled_deribit_options_chain_is_contiguous() -> None:
    last: Dict[str, int] = {}
    kinds: Counter = Counter()
    for f in recv(RECORDINGS / "deribit_options.jsonl.gz"):
        channel = f.msg.get("params", {}).get("channel", "")
        if not channel.startswith("book."):
            kinds[channel.split(".")[0] or "rpc"] += 1
            continue
        data = f.msg["params"]["data"]
        name = data["instrument_name"]
        if data.get("type") == "snapshot":
            kinds["snapshot"] += 1
        else:
            kinds["change"] += 1
            assert data["prev_change_id"] == last[name], name
        last[name] = data["change_id"]
    assert len(last) == 10
    assert kinds == {"snapshot": 10, "change": 177, "ticker": 273, "rpc": 1}


def test_bundled_coinbase_exchange_level2() -> None:
    types = Counter(f.msg["type"] for f in recv(RECORDINGS / "coinbase_exchange_level2.jsonl.gz"))
    assert types["snapshot"] == 10
    assert types["l2update"] == 9719
    assert sum(types.values()) == 9946


def test_bundled_timestamps_are_epoch_ms_in_file_order() -> None:
    for name in OLD_BUNDLED + list(BINANCE_BUNDLED):
        ts = [f.ts for f in frames(RECORDINGS / name)]
        assert ts == sorted(ts), name
        assert 1.5e12 < ts[0] < 2e12, name


def sync_binance(fs: List[CaptureFrame], futures: bool) -> Dict[str, int]:
    """Apply Binance's documented sync rule to every book; diffs applied per symbol.

    Diffs that arrive before a symbol's snapshot are buffered; after it, stale ones
    are dropped (spot: ``u <= lastUpdateId``, futures: ``u < lastUpdateId``), the
    first kept must straddle it (spot ``U <= id+1 <= u``, futures ``U <= id <= u``),
    and every later diff must chain (spot ``U == prev u + 1``, futures ``pu == prev u``).
    """
    buffered: Dict[str, List[dict]] = {}
    last: Dict[str, Optional[int]] = {}
    applied: Counter = Counter()

    def apply(d: dict) -> None:
        s = d["s"]
        if last[s] is None:
            raise AssertionError("diff before snapshot")
        if s not in applied:
            snap = last[s]
            if d["u"] < snap + (0 if futures else 1):
                return
            assert d["U"] <= snap + (0 if futures else 1) <= d["u"], s
        else:
            assert (d["pu"] == last[s]) if futures else (d["U"] == last[s] + 1), s
        last[s] = d["u"]
        applied[s] += 1

    for f in fs:
        if f.dir == "rest":
            symbol = f.url.split("symbol=")[1].split("&")[0]
            assert "/depth?" in f.url and f.url.endswith("limit=1000")
            last[symbol] = f.msg["lastUpdateId"]
            for d in buffered.pop(symbol, []):
                apply(d)
            continue
        d = f.msg.get("data", {})
        if d.get("e") != "depthUpdate":
            continue
        if d["s"] not in last:
            buffered.setdefault(d["s"], []).append(d)
        else:
            apply(d)
    return dict(applied)


@pytest.mark.parametrize("name", list(BINANCE_BUNDLED))
def test_bundled_binance_diff_chains_are_intact(name: str) -> None:
    venue, stream, diffs, symbols = BINANCE_BUNDLED[name]
    fs = frames(RECORDINGS / name)
    assert {(f.venue, f.stream) for f in fs} == {(venue, stream)}
    rest = [f for f in fs if f.dir == "rest"]
    assert len(rest) == symbols
    applied = sync_binance(fs, futures=venue != "binance")
    assert len(applied) == symbols and sum(applied.values()) == diffs


def test_bundled_binance_contents() -> None:
    counts = {name: Counter(kind(f) for f in frames(RECORDINGS / name)) for name in BINANCE_BUNDLED}
    assert counts == {
        "binance_spot_btcusdt.jsonl.gz": {"depthUpdate": 599, "bookTicker": 5360, "trade": 1381,
                                          "snapshot": 1},
        "binance_usdm_ethusdt.jsonl.gz": {"depthUpdate": 385, "bookTicker": 3595, "trade": 626,
                                          "snapshot": 1},
        "binance_coinm_ethusd_perp.jsonl.gz": {"depthUpdate": 2637, "bookTicker": 2083,
                                               "trade": 152, "snapshot": 1},
        "binance_spot_10pairs.jsonl.gz": {"depthUpdate": 2521, "bookTicker": 3071,
                                          "aggTrade": 663, "snapshot": 10},
    }
    spot = frames(RECORDINGS / "binance_spot_btcusdt.jsonl.gz")
    assert spot[7].dir == "rest"  # line 8 of the original file, where it was recorded
    assert spot[7].url == "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"


# ------------------------------------------------------------ no ../shared needed


def test_sniff_formats() -> None:
    def sniffed(line: str) -> List[str]:
        return [name for name, m in FORMATS.items() if m.sniff(line)]

    assert sniffed('configuration: {"l2_book": []}') == ["cryptofeed-v1"]
    assert sniffed("wss://example.invalid/ws <-> 1617644856.5") == ["cryptofeed-v1"]
    assert sniffed('1617644856.5: {"a": 1}') == ["cryptofeed-v1"]
    assert sniffed('{"t":"header","format":2}') == ["cryptofeed-v2", "ssc2ce"]
    assert sniffed('1723161253937085768 {"stream":"x","data":{}}') == ["hftbacktest"]
    assert sniffed('{"jsonrpc":"2.0","id":1}') == ["ssc2ce"]
    assert sniffed("# README") == []


def test_base_name_drops_rotation_and_compression() -> None:
    assert base_name(Path("COINBASE.ws.28.0")) == "COINBASE.ws.28"
    assert base_name(Path("DERIBIT-5dd9ce.0")) == "DERIBIT-5dd9ce"
    assert base_name(Path("deribit_dump.jsonl")) == "deribit_dump"
    assert base_name(Path("btcusdt_20240808.gz")) == "btcusdt_20240808"


def test_exchange_stamps() -> None:
    assert exchange_stamp("deribit", {"params": {"data": {"timestamp": 1592820067334}}}) == 1592820067334
    assert exchange_stamp("deribit", {"usOut": 1592820068466004}) == 1592820068466.004
    assert exchange_stamp("coinbase", {"time": "2020-06-23T04:49:41.280581Z"}) == 1592887781280.581
    assert exchange_stamp("coinbase", {"type": "snapshot"}) is None
    assert exchange_stamp("binance_usdm", {"stream": "x", "data": {"E": 1723161256303}}) == 1723161256303
    assert exchange_stamp("deribit", {"params": "not a dict"}) is None


def test_ssc2ce_timestamps_are_borrowed_and_never_run_backwards(tmp_path: Path) -> None:
    lines = [
        '{"jsonrpc":"2.0","id":1,"result":[]}',
        '{"jsonrpc":"2.0","method":"subscription","params":{"data":{"timestamp":1592820067000}}}',
        '{"jsonrpc":"2.0","method":"heartbeat"}',
        '{"jsonrpc":"2.0","method":"subscription","params":{"data":{"timestamp":1592820066500}}}',
        "",
        '{"jsonrpc":"2.0","method":"subscription","params":{"data":{"timestamp":1592820068000}}}',
    ]
    src = tmp_path / "dump.jsonl"
    src.write_text("\n".join(lines) + "\n")
    summary = convert(src, tmp_path / "out.jsonl")
    assert (summary.fmt, summary.venue, summary.skipped) == ("ssc2ce", "deribit", {"blank": 1})
    out = frames(tmp_path / "out.jsonl")
    t = 1592820067000
    assert [f.ts for f in out] == [t, t, t, t, t + 1000]
    assert [f.msg for f in out] == [orjson.loads(x) for x in lines if x]


def test_a_dump_without_any_time_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "dump.jsonl"
    src.write_text('{"jsonrpc":"2.0","method":"heartbeat"}\n' * 3)
    with pytest.raises(ConvertError, match="no frame carries an exchange time"):
        convert(src, tmp_path / "out.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.jsonl"]  # no output, no temp file


def test_cryptofeed_v1_reconnect_rest_and_send(tmp_path: Path) -> None:
    src = tmp_path / "DERIBIT-abc123.0"
    src.write_text(
        "wss://www.deribit.com/ws/api/v2 <-> 1617644856.0\n"
        'wss://www.deribit.com/ws/api/v2 <- 1617644856.5: {"id":0}\n'
        '1617644857.0: {"id":0,"result":[]}\n'
        "https://www.deribit.com/api/v2/public/get_order_book?instrument_name=BTC-PERPETUAL"
        ' -> 1617644857.5: {"result":{}}\n'
        "wss://www.deribit.com/ws/api/v2 <-> 1617644858.0\n"
        '1617644859.25: {"jsonrpc":"2.0"}\n'
        '12.5: {"too":"early"}\n'
        "garbage\n"
    )
    summary = convert(src, tmp_path / "out.jsonl")
    assert summary.skipped == {"connect": 2, "malformed": 1, "bad_time": 1}
    out = frames(tmp_path / "out.jsonl")
    assert [(f.ts, f.stream, f.dir) for f in out] == [
        (1617644856500.0, "deribit:DERIBIT-abc123", "send"),
        (1617644857000.0, "deribit:DERIBIT-abc123", "recv"),
        (1617644857500.0, "deribit:DERIBIT-abc123", "rest"),
        (1617644859250.0, "deribit:DERIBIT-abc123#2", "recv"),
    ]
    assert out[2].url.endswith("instrument_name=BTC-PERPETUAL") and out[2].msg == {"result": {}}


def test_cryptofeed_v2_http_lines_become_rest_frames(tmp_path: Path) -> None:
    src = tmp_path / "COINBASE.jsonl"
    records = [
        {"t": "header", "format": 2, "exchange": "COINBASE", "recorded": 1786309548.0},
        {"t": "http", "conn": "COINBASE.http.1", "ts": 1786309548.1,
         "url": "https://api.coinbase.com/api/v3/brokerage/market/products", "data": '{"products": []}'},
        {"t": "connect", "conn": "COINBASE.ws.2", "ts": 1786309548.2,
         "addr": "wss://advanced-trade-ws.coinbase.com"},
        {"t": "recv", "conn": "COINBASE.ws.2", "ts": 1786309548.3,
         "data": '{"channel":"heartbeats","sequence_num":0,"events":[]}'},
        {"t": "recv", "conn": 5, "ts": 1786309548.4, "data": "{}"},
        {"t": "recv", "conn": "COINBASE.ws.2", "ts": "soon", "data": "{}"},
    ]
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    summary = convert(src, tmp_path / "out.jsonl")
    assert summary.venue == "coinbase"
    assert summary.skipped == {"header": 1, "connect": 1, "malformed": 1, "bad_time": 1}
    rest, heartbeat = frames(tmp_path / "out.jsonl")
    assert (rest.dir, rest.stream, rest.url, rest.msg) == (
        "rest", "coinbase:COINBASE.http.1", records[1]["url"], {"products": []})
    assert rest.raw == b'{"products": []}'  # verbatim, spaces and all
    assert heartbeat.dir == "recv" and heartbeat.ts == 1786309548300.0


def test_products_refused_for_coinbase(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "dump.jsonl"
    # An Advanced Trade frame: its sequence_num counts every frame on the connection.
    src.write_text('{"channel":"heartbeats","sequence_num":0,"events":[],'
                   '"timestamp":"2026-08-09T21:05:48.1Z"}\n')
    dst = tmp_path / "out.jsonl"
    assert main([str(src), str(dst), "--products", "BTC-USD"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "coinbase" in err
    assert not dst.exists()


def test_products_filter_allowed_for_coinbase_exchange(tmp_path: Path) -> None:
    """The Exchange feed has no connection-level counter, so filtering loses nothing."""
    src = tmp_path / "dump.jsonl"
    src.write_text('{"type":"heartbeat","product_id":"BTC-USD","sequence":1,'
                   '"time":"2021-04-17T16:43:37.1Z"}\n'
                   '{"type":"heartbeat","product_id":"ETH-USD","sequence":2,'
                   '"time":"2021-04-17T16:43:37.2Z"}\n')
    dst = tmp_path / "out.jsonl"
    assert main([str(src), str(dst), "--products", "ETH-USD"]) == 0
    assert [f.msg["product_id"] for f in frames(dst)] == ["ETH-USD"]


def test_zst_without_zstandard_is_a_clear_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    src = tmp_path / "COINBASE.jsonl.zst"
    src.write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(ConvertError, match="zstandard"):
        convert(src, tmp_path / "out.jsonl")


@pytest.mark.parametrize("name", OLD_BUNDLED + ["binance_spot_btcusdt.jsonl.gz"])
def test_a_lobstream_capture_is_refused_as_input(tmp_path: Path, name: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    for fmt in ("auto", "ssc2ce"):
        dst = tmp_path / f"out_{fmt}.jsonl"
        assert main([str(RECORDINGS / name), str(dst), "--format", fmt]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already a lobstream capture" in err
        assert not dst.exists()


def test_headerless_capture_lines_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "lines.jsonl"
    with gzip.open(RECORDINGS / "deribit_options.jsonl.gz", "rb") as f:
        f.readline()
        src.write_bytes(b"".join(islice(f, 5)))
    with pytest.raises(ConvertError, match="without their header"):
        convert(src, tmp_path / "out.jsonl")


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    kraken_v2 = tmp_path / "KRAKEN.jsonl"
    kraken_v2.write_text('{"t":"header","format":2,"exchange":"KRAKEN"}\n'
                         '{"t":"connect","conn":"KRAKEN.ws.1","ts":1.7e9,"addr":"wss://ws.kraken.com"}\n')
    kraken_v1 = tmp_path / "COINBASE-like.0"
    kraken_v1.write_text("wss://ws.kraken.com <-> 1617644856.0\n1617644857.0: {}\n")
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me")
    cases = [
        ([str(REPO / "README.md"), str(tmp_path / "o1.jsonl")], "not a recorder file"),
        ([str(tmp_path / "empty"), str(tmp_path / "o2.jsonl")], "empty"),
        ([str(tmp_path / "missing"), str(tmp_path / "o3.jsonl")], "no such file"),
        ([str(kraken_v2), str(tmp_path / "o4.jsonl")], "not a venue lobstream can replay"),
        ([str(kraken_v1), str(tmp_path / "o5.jsonl")], "not a venue lobstream can replay"),
        ([str(kraken_v2), str(tmp_path / "o6.jsonl"), "--venue", "kraken"], "invalid choice"),
        ([str(RECORDINGS / "deribit_gap.jsonl"), str(tmp_path / "o7.jsonl"), "--format", "ssc2ce"],
         "already a lobstream capture"),
        ([str(kraken_v2), str(existing)], "exists; pass --force"),
        ([str(kraken_v2), str(tmp_path / "no" / "such" / "dir" / "o.jsonl"), "--venue", "deribit"],
         "No such file or directory"),
    ]
    for argv, why in cases:
        proc = subprocess.run([sys.executable, "-m", "sources.capture.convert", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0, argv
        assert proc.stderr.count("\n") == 1 and why in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and not proc.stdout
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["empty", "KRAKEN.jsonl", "COINBASE-like.0", "exists.jsonl"])


def test_force_replaces_an_existing_output(tmp_path: Path) -> None:
    src = as_hftbacktest(RECORDINGS / "binance_usdm_ethusdt.jsonl.gz", tmp_path / "ethusdt.gz")
    dst = tmp_path / "out.jsonl"
    dst.write_text("old")
    with pytest.raises(ConvertError, match="exists"):
        convert(src, dst)
    convert(src, dst, force=True)
    assert len(frames(dst)) == 4607


@pytest.mark.parametrize("name", list(BINANCE_BUNDLED)[:3])
def test_hftbacktest_round_trip_and_market_detection(tmp_path: Path, name: str) -> None:
    """Written back in hftbacktest's format (and split over gzip members), a bundled
    capture converts back frame for frame: same venue told from the content alone,
    the snapshot a rest frame at its position with the endpoint's URL."""
    venue, _, _, _ = BINANCE_BUNDLED[name]
    original = frames(RECORDINGS / name)
    stem = original[0].stream.split(":", 1)[1]
    for members in (1, 3):
        (tmp_path / f"{members}").mkdir()
        src = as_hftbacktest(RECORDINGS / name, tmp_path / f"{members}" / f"{stem}.gz", members)
        summary = convert(src, tmp_path / f"{members}.jsonl")
        assert (summary.fmt, summary.venue) == ("hftbacktest", venue)
        assert frames(tmp_path / f"{members}.jsonl") == original


def test_binance_market_from_the_snapshot_alone(tmp_path: Path) -> None:
    """No depth diff in the sniffed lines: the COIN-M snapshot's pair, the futures
    snapshot's E, or neither (spot) decides; the symbol comes from a later message."""
    cases = {
        '{"lastUpdateId":1,"E":1723161256567,"T":1723161256561,"symbol":"ETHUSD_PERP",'
        '"pair":"ETHUSD","bids":[],"asks":[]}': ("binance_coinm", "/dapi/v1/depth?symbol=ETHUSD_PERP"),
        '{"lastUpdateId":1,"E":1723161256567,"T":1723161256561,"bids":[],"asks":[]}':
            ("binance_usdm", "/fapi/v1/depth?symbol=ETHUSDT"),
        '{"lastUpdateId":1,"bids":[["1.0","2.0"]],"asks":[]}':
            ("binance", "/api/v3/depth?symbol=ETHUSDT&limit=100"),
    }
    for i, (snapshot, (venue, url)) in enumerate(cases.items()):
        src = tmp_path / f"{i}.gz"
        src.write_bytes(gzip.compress(
            f"1723161255000000000 {snapshot}\n"
            '1723161255100000000 {"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT"}}\n'
            .encode()))
        summary = convert(src, tmp_path / f"{i}.jsonl")
        rest, trade = frames(tmp_path / f"{i}.jsonl")
        assert summary.venue == venue and rest.dir == "rest" and url in rest.url, i
        assert trade.dir == "recv"


def test_truncated_gzip_input_converts_what_is_there(tmp_path: Path) -> None:
    src = as_hftbacktest(RECORDINGS / "binance_spot_btcusdt.jsonl.gz", tmp_path / "full.gz")
    cut = tmp_path / "btcusdt_20240808.gz"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    proc = subprocess.run([sys.executable, "-m", "sources.capture.convert", str(cut),
                           str(tmp_path / "out.jsonl")], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "cut_off 1" in proc.stdout
    assert "ends early" in proc.stderr and "Traceback" not in proc.stderr
    got = frames(tmp_path / "out.jsonl")
    original = frames(RECORDINGS / "binance_spot_btcusdt.jsonl.gz")
    assert 1000 < len(got) < len(original) and got == original[: len(got)]


def test_progress_lines_and_summary(tmp_path: Path) -> None:
    src = as_hftbacktest(RECORDINGS / "binance_spot_btcusdt.jsonl.gz", tmp_path / "btcusdt.gz")
    seen: List[Progress] = []
    summary = convert(src, tmp_path / "out.jsonl.gz", progress=seen.append, progress_seconds=0)
    assert len(seen) > 10
    assert [p.frames for p in seen] == sorted(p.frames for p in seen)
    assert all(p.total_bytes == src.stat().st_size and p.done_bytes <= p.total_bytes for p in seen)
    assert "%" in seen[-1].line("x") and "frames" in seen[-1].line("x")
    line = summary.line("in", "out")
    assert line.count("\n") == 0 and "rest 1 in/1 out" in line and "recv 7340 in/7340 out" in line


def test_window_keeps_a_prefix(tmp_path: Path) -> None:
    src = as_hftbacktest(RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz",
                         tmp_path / "ethusd_perp_20240808.gz")
    summary = convert(src, tmp_path / "w.jsonl", window=5)
    got = frames(tmp_path / "w.jsonl")
    original = frames(RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz")
    assert got == original[: len(got)] and got[-1].ts - got[0].ts <= 5000
    assert original[len(got)].ts - got[0].ts > 5000
    assert summary.frames_in["recv"] == len(original) - 1
    assert any(f.dir == "rest" for f in got)


# ------------------------------------------------------------ ../shared files


def assert_verbatim(out: List[CaptureFrame], originals: List[str]) -> None:
    assert len(out) == len(originals)
    for frame, original in zip(out, originals):
        assert frame.is_json and frame.raw == original.encode()
        assert frame.msg == orjson.loads(original)


def test_cryptofeed_v2_slice_plain_and_zst(shared: Path, tmp_path: Path) -> None:
    src = write_slice(shared / "coinbase" / "COINBASE.jsonl", tmp_path / "COINBASE.jsonl", 60)
    records = [orjson.loads(line) for line in src.read_bytes().splitlines()]
    kept = [r for r in records if r["t"] in ("recv", "send", "http")]
    summary = convert(src, tmp_path / "plain.jsonl.gz")
    assert (summary.fmt, summary.venue) == ("cryptofeed-v2", "coinbase")
    assert summary.skipped == {"header": 1, "connect": 1}
    out = frames(tmp_path / "plain.jsonl.gz")
    assert_verbatim(out, [r["data"] for r in kept])
    directions = {"recv": "recv", "send": "send", "http": "rest"}
    assert [(f.dir, f.stream, f.ts, f.url) for f in out] == [
        (directions[r["t"]], f"coinbase:{r['conn']}", round(r["ts"] * 1000, 3), r.get("url"))
        for r in kept]

    zstandard = pytest.importorskip("zstandard")
    zst = tmp_path / "COINBASE.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(src.read_bytes()))
    convert(zst, tmp_path / "from_zst.jsonl")
    assert frames(tmp_path / "from_zst.jsonl") == out


def test_cryptofeed_v1_slice(shared: Path, tmp_path: Path) -> None:
    src = write_slice(shared / "deribit" / "DERIBIT-5dd9ce.0", tmp_path / "DERIBIT-5dd9ce.0", 40)
    lines = src.read_text().splitlines()
    summary = convert(src, tmp_path / "out.jsonl")
    assert (summary.fmt, summary.venue) == ("cryptofeed-v1", "deribit")
    assert summary.skipped == {"configuration": 1, "connect": 1}
    assert summary.frames_in == {"send": 1, "recv": 37}
    out = frames(tmp_path / "out.jsonl")
    assert {f.stream for f in out} == {"deribit:DERIBIT-5dd9ce"}
    assert_verbatim(out, [line.split(": ", 1)[1] for line in lines[2:]])

    filtered = convert(src, tmp_path / "one.jsonl", products=["ETH-9APR21-1950-C"])
    kept = frames(tmp_path / "one.jsonl")
    assert filtered.frames_out["recv"] == len(kept) - 1 < 37
    for f in kept[1:]:  # the subscribe request names every instrument and stays
        assert "ETH-9APR21-1950-C" in f.msg.get("params", {}).get("channel", "ETH-9APR21-1950-C")


def test_cryptofeed_v1_binance_rest_snapshots_are_kept(shared: Path, tmp_path: Path) -> None:
    src = shared / "binance" / "cryptofeed" / "BINANCE-b38f7c.0"
    summary = convert(src, tmp_path / "all.jsonl")
    assert (summary.fmt, summary.venue) == ("cryptofeed-v1", "binance")
    assert summary.frames_out == {"recv": 11357, "rest": 10}
    assert summary.skipped == {"blank": 1, "configuration": 1, "connect": 1}
    out = frames(tmp_path / "all.jsonl")
    rest = [f for f in out if f.dir == "rest"]
    assert [f.url.split("symbol=")[1].split("&")[0] for f in rest] == [
        "ZILUSDT", "MANAUSDT", "DENTUSDT", "AXSBNB", "ETHBRL", "BTCSTUSDT", "QTUMETH", "BTCAUD",
        "RENBTCETH", "NEOUSDC"]
    assert all(f.url.startswith("https://www.binance.com/api/v1/depth?") for f in rest)
    assert sum(sync_binance(out, futures=False).values()) == 4642  # SOURCES.md

    convert(src, tmp_path / "zil.jsonl", products=["ZIL-USDT"])
    zil = frames(tmp_path / "zil.jsonl")
    assert [f.url for f in zil if f.dir == "rest"] == [rest[0].url]
    assert {f.msg["data"]["s"] for f in zil if f.dir == "recv"} == {"ZILUSDT"}


def test_ssc2ce_dumps(shared: Path, tmp_path: Path) -> None:
    for name, venue in (("deribit/deribit_dump.jsonl", "deribit"),
                        ("coinbase/coinbase_dump.jsonl", "coinbase_exchange")):
        src = shared / name
        summary = convert(src, tmp_path / "out.jsonl", force=True)
        assert (summary.fmt, summary.venue) == ("ssc2ce", venue)
        out = frames(tmp_path / "out.jsonl")
        assert_verbatim(out, src.read_text().splitlines())
        ts = [f.ts for f in out]
        assert ts == sorted(ts) and ts[0] > 1.5e12
    # The Coinbase snapshot has no time of its own; it borrows the first l2update's.
    assert out[1].msg["type"] == "snapshot"
    assert out[1].ts == out[2].ts == exchange_stamp("coinbase_exchange", out[2].msg)


@pytest.mark.parametrize("path, venue, counts, snapshot_at", [
    ("binance/spot/btcusdt_20240808.gz", "binance",
     {"depthUpdate": 3451, "snapshot": 1, "trade": 9757, "bookTicker": 28040}, 7),
    ("binance/usdm/ethusdt_20240808.gz", "binance_usdm",
     {"depthUpdate": 6586, "snapshot": 1, "trade": 14076, "bookTicker": 53992}, 40),
    ("binance/coinm/ethusd_perp_20240808.gz", "binance_coinm",
     {"depthUpdate": 22909, "snapshot": 1, "trade": 1732, "bookTicker": 15812}, 26),
])
def test_hftbacktest_files_match_their_sources(shared: Path, tmp_path: Path, path: str,
                                               venue: str, counts: Dict[str, int],
                                               snapshot_at: int) -> None:
    """Counts as SOURCES.md gives them; the snapshot at its line, as a rest frame."""
    summary = convert(shared / path, tmp_path / "out.jsonl")
    assert (summary.fmt, summary.venue) == ("hftbacktest", venue)
    out = frames(tmp_path / "out.jsonl")
    assert Counter(kind(f) for f in out) == counts
    assert out[snapshot_at].dir == "rest" and "limit=1000" in out[snapshot_at].url
    assert {f.stream for f in out} == {f"{venue}:{Path(path).name.removesuffix('.gz')}"}
    assert sync_binance(out, futures=venue != "binance")  # the whole chain holds


REGENERATE = [
    ("coinbase_advanced_btc_eth.jsonl.gz", "coinbase/COINBASE.jsonl", []),
    ("deribit_options.jsonl.gz", "deribit/DERIBIT-5dd9ce.0", []),
    ("deribit_gap.jsonl", "deribit/deribit_dump.jsonl", []),
    ("coinbase_exchange_level2.jsonl.gz", "coinbase/COINBASE.ws.28.0", []),
    ("binance_spot_btcusdt.jsonl.gz", "binance/spot/btcusdt_20240808.gz", ["--window", "60"]),
    ("binance_usdm_ethusdt.jsonl.gz", "binance/usdm/ethusdt_20240808.gz", ["--window", "20"]),
    ("binance_coinm_ethusd_perp.jsonl.gz", "binance/coinm/ethusd_perp_20240808.gz",
     ["--window", "40"]),
    ("binance_spot_10pairs.jsonl.gz", "binance/cryptofeed/BINANCE-b38f7c.0", ["--window", "60"]),
]


@pytest.mark.parametrize("name, source, options", REGENERATE)
def test_bundled_recordings_regenerate_identically(shared: Path, tmp_path: Path, name: str,
                                                   source: str, options: List[str]) -> None:
    """The PROVENANCE.md commands reproduce the bundled frames (the header's
    creation time is the only difference). The Advanced Trade capture predates
    REST frames: today's converter adds the one REST products reply as a rest
    frame, and every other frame is identical."""
    fresh = tmp_path / name
    assert main([str(shared / source), str(fresh), *options]) == 0

    def body(path: Path) -> List[bytes]:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            return f.read().splitlines()[1:]

    regenerated = body(fresh)
    if name == "coinbase_advanced_btc_eth.jsonl.gz":
        rest = [x for x in regenerated if b'"dir":"rest"' in x[:120]]
        assert len(rest) == 1 and b"/brokerage/market/products" in rest[0][:300]
        regenerated = [x for x in regenerated if x not in rest]
    assert regenerated == body(RECORDINGS / name)

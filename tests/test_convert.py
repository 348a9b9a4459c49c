"""Tests for sources.capture.convert and for the recordings bundled in recordings/.

Two groups: the bundled recordings are checked on their own (they ship with the
repo, so these always run), and the converter is exercised on slices of the
original recorder files in ../shared/data, which only some checkouts have; those
tests skip when it is absent.
"""

from __future__ import annotations

import gzip
import sys
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Dict, List

import orjson
import pytest

from sources.capture.format import CaptureFrame, read_capture
from sources.capture.convert import (
    ConvertError,
    _base_name,
    convert,
    exchange_stamp,
    main,
    sniff_format,
)

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "recordings"
SHARED = REPO.parent / "shared" / "data"


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


# ------------------------------------------------------------ bundled recordings


def test_bundled_files_are_small_captures() -> None:
    names = ["coinbase_advanced_btc_eth.jsonl.gz", "deribit_options.jsonl.gz",
             "deribit_gap.jsonl", "coinbase_exchange_level2.jsonl.gz"]
    for name in names:
        path = RECORDINGS / name
        assert path.stat().st_size < 5_000_000, name
        assert frames(path), name
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
    for name in ("coinbase_advanced_btc_eth.jsonl.gz", "deribit_gap.jsonl"):
        ts = [f.ts for f in frames(RECORDINGS / name)]
        assert ts == sorted(ts), name
        assert 1.5e12 < ts[0] < 2e12, name


# ------------------------------------------------------------ no ../shared needed


def test_sniff_format() -> None:
    assert sniff_format('configuration: {"l2_book": []}') == "cryptofeed-v1"
    assert sniff_format("wss://example.invalid/ws <-> 1617644856.5") == "cryptofeed-v1"
    assert sniff_format('1617644856.5: {"a": 1}') == "cryptofeed-v1"
    assert sniff_format('{"t":"header","format":2}') == "cryptofeed-v2"
    assert sniff_format('{"jsonrpc":"2.0","id":1}') == "ssc2ce"


def test_base_name_drops_rotation_and_compression() -> None:
    assert _base_name(Path("COINBASE.ws.28.0")) == "COINBASE.ws.28"
    assert _base_name(Path("DERIBIT-5dd9ce.0")) == "DERIBIT-5dd9ce"
    assert _base_name(Path("deribit_dump.jsonl")) == "deribit_dump"


def test_exchange_stamps() -> None:
    assert exchange_stamp("deribit", {"params": {"data": {"timestamp": 1592820067334}}}) == 1592820067334
    assert exchange_stamp("deribit", {"usOut": 1592820068466004}) == 1592820068466.004
    assert exchange_stamp("coinbase", {"time": "2020-06-23T04:49:41.280581Z"}) == 1592887781280.581
    assert exchange_stamp("coinbase", {"type": "snapshot"}) is None


def test_ssc2ce_timestamps_are_borrowed_and_never_run_backwards(tmp_path: Path) -> None:
    lines = [
        '{"jsonrpc":"2.0","id":1,"result":[]}',
        '{"jsonrpc":"2.0","method":"subscription","params":{"data":{"timestamp":2000}}}',
        '{"jsonrpc":"2.0","method":"heartbeat"}',
        '{"jsonrpc":"2.0","method":"subscription","params":{"data":{"timestamp":1500}}}',
        "",
        '{"jsonrpc":"2.0","method":"subscription","params":{"data":{"timestamp":3000}}}',
    ]
    src = tmp_path / "dump.jsonl"
    src.write_text("\n".join(lines) + "\n")
    summary = convert(src, tmp_path / "out.jsonl")
    assert (summary.fmt, summary.venue, summary.skipped) == ("ssc2ce", "deribit", {"blank": 1})
    out = frames(tmp_path / "out.jsonl")
    assert [f.ts for f in out] == [2000, 2000, 2000, 2000, 3000]
    assert [f.msg for f in out] == [orjson.loads(x) for x in lines if x]


def test_cryptofeed_v1_reconnect_starts_a_new_stream(tmp_path: Path) -> None:
    src = tmp_path / "DERIBIT-abc123.0"
    src.write_text(
        "wss://www.deribit.com/ws/api/v2 <-> 1.0\n"
        'wss://www.deribit.com/ws/api/v2 <- 1.5: {"id":0}\n'
        '2.0: {"id":0,"result":[]}\n'
        "wss://www.deribit.com/ws/api/v2 <-> 3.0\n"
        '4.25: {"jsonrpc":"2.0"}\n'
        "https://www.deribit.com/api/v2/public/x -> 5.0: {}\n"
        "garbage\n"
    )
    summary = convert(src, tmp_path / "out.jsonl")
    assert summary.skipped == {"connect": 2, "rest": 1, "malformed": 1}
    out = frames(tmp_path / "out.jsonl")
    assert [(f.ts, f.stream, f.dir) for f in out] == [
        (1500.0, "deribit:DERIBIT-abc123", "send"),
        (2000.0, "deribit:DERIBIT-abc123", "recv"),
        (4250.0, "deribit:DERIBIT-abc123#2", "recv"),
    ]


def test_products_refused_for_coinbase(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "dump.jsonl"
    # An Advanced Trade frame: its sequence_num counts every frame on the connection.
    src.write_text('{"channel":"heartbeats","sequence_num":0,"events":[]}\n')
    dst = tmp_path / "out.jsonl"
    assert main([str(src), str(dst), "--products", "BTC-USD"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "coinbase" in err
    assert not dst.exists()


def test_products_filter_allowed_for_coinbase_exchange(tmp_path: Path) -> None:
    """The Exchange feed has no connection-level counter, so filtering loses nothing."""
    src = tmp_path / "dump.jsonl"
    src.write_text('{"type":"heartbeat","product_id":"BTC-USD","sequence":1}\n'
                   '{"type":"heartbeat","product_id":"ETH-USD","sequence":2}\n')
    dst = tmp_path / "out.jsonl"
    assert main([str(src), str(dst), "--products", "ETH-USD"]) == 0
    assert [f.msg["product_id"] for f in frames(dst)] == ["ETH-USD"]


def test_zst_without_zstandard_is_a_clear_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    src = tmp_path / "COINBASE.jsonl.zst"
    src.write_bytes(b"")
    with pytest.raises(ConvertError, match="zstandard"):
        convert(src, tmp_path / "out.jsonl")


# ------------------------------------------------------------ slices of ../shared


def assert_verbatim(out: List[CaptureFrame], originals: List[str]) -> None:
    assert len(out) == len(originals)
    for frame, original in zip(out, originals):
        assert frame.raw is None
        assert frame.msg == orjson.loads(original)


def test_cryptofeed_v2_slice_plain_and_zst(shared: Path, tmp_path: Path) -> None:
    src = write_slice(shared / "coinbase" / "COINBASE.jsonl", tmp_path / "COINBASE.jsonl", 60)
    records = [orjson.loads(line) for line in src.read_bytes().splitlines()]
    kept = [r for r in records if r["t"] in ("recv", "send")]
    summary = convert(src, tmp_path / "plain.jsonl.gz")
    assert (summary.fmt, summary.venue) == ("cryptofeed-v2", "coinbase")
    assert summary.skipped == {"header": 1, "http": 1, "connect": 1}
    out = frames(tmp_path / "plain.jsonl.gz")
    assert_verbatim(out, [r["data"] for r in kept])
    assert [(f.dir, f.stream, f.ts) for f in out] == [
        (r["t"], f"coinbase:{r['conn']}", round(r["ts"] * 1000, 3)) for r in kept]

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


def test_cryptofeed_v1_rest_lines_are_counted(shared: Path, tmp_path: Path) -> None:
    src = write_slice(shared / "binance" / "cryptofeed" / "BINANCE-b38f7c.0",
                      tmp_path / "BINANCE-b38f7c.0", 30)
    summary = convert(src, tmp_path / "out.jsonl", products=["ZIL-USDT"])
    assert summary.venue == "binance"
    assert summary.skipped["rest"] == 7
    assert summary.frames_in["recv"] == 30 - 2 - 7
    symbols = {f.msg["data"]["s"] for f in frames(tmp_path / "out.jsonl")}
    assert symbols == {"ZILUSDT"}


def test_ssc2ce_dumps(shared: Path, tmp_path: Path) -> None:
    for name, venue in (("deribit/deribit_dump.jsonl", "deribit"),
                        ("coinbase/coinbase_dump.jsonl", "coinbase_exchange")):
        src = shared / name
        summary = convert(src, tmp_path / "out.jsonl")
        assert (summary.fmt, summary.venue) == ("ssc2ce", venue)
        out = frames(tmp_path / "out.jsonl")
        assert_verbatim(out, src.read_text().splitlines())
        ts = [f.ts for f in out]
        assert ts == sorted(ts) and ts[0] > 1.5e12
    # The Coinbase snapshot has no time of its own; it borrows the first l2update's.
    assert out[1].msg["type"] == "snapshot"
    assert out[1].ts == out[2].ts == exchange_stamp("coinbase_exchange", out[2].msg)


@pytest.mark.parametrize("name, source", [
    ("coinbase_advanced_btc_eth.jsonl.gz", "coinbase/COINBASE.jsonl"),
    ("deribit_options.jsonl.gz", "deribit/DERIBIT-5dd9ce.0"),
    ("deribit_gap.jsonl", "deribit/deribit_dump.jsonl"),
    ("coinbase_exchange_level2.jsonl.gz", "coinbase/COINBASE.ws.28.0"),
])
def test_bundled_recordings_regenerate_identically(shared: Path, tmp_path: Path,
                                                   name: str, source: str) -> None:
    """The PROVENANCE.md commands reproduce the bundled frames (the header's
    creation time is the only difference)."""
    fresh = tmp_path / name
    convert(shared / source, fresh)

    def body(path: Path) -> bytes:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            f.readline()
            return f.read()

    assert body(fresh) == body(RECORDINGS / name)

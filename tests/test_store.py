"""The tick store: round trips of every kind, versions and as-of reads, deletes with
their audit trail, compaction, bulk imports and DuckDB queries, on real recordings
replayed through the real flow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List

import orjson
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

import pyarrow.parquet as pq
from bytewax.testing import run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow
from sinks.store import KINDS
from sinks.store.bulk import import_captures
from sinks.store.index import history
from sinks.store.layout import PartitionDay, Root, component
from sinks.store.read import query, read
from sinks.store.schema import SCHEMAS, SCHEMA_VERSION
from sinks.store.writer import StoreWriter, delete_day, undelete_day

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
CAPTURES = [RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz",
            RECORDINGS / "deribit_options.jsonl.gz",
            RECORDINGS / "binance_usdm_ethusdt.jsonl.gz"]


def store_cfg(root: Path, mode: str = "replace") -> dict:
    return dict(Config().store, root=str(root), mode=mode)


def emitted(directory: Path) -> List[dict]:
    return [orjson.loads(line) for f in sorted(directory.iterdir())
            for line in f.read_bytes().splitlines()]


def canon(records: List[dict]) -> List[bytes]:
    return sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """Three venues' recordings through the flow into a store and into JSON lines."""
    top = tmp_path_factory.mktemp("replayed")
    cfg = Config(replay=[str(p) for p in CAPTURES], sinks=["store", "jsonl"],
                 jsonl_dir=str(top / "jsonl"), bar_intervals=(1000, 60_000),
                 store=store_cfg(top / "store"))
    run_main(build_flow(cfg))
    return top / "store", emitted(top / "jsonl")


def test_every_kind_round_trips_exactly(replayed):
    root, records = replayed
    by_key: Dict[tuple, List[dict]] = {}
    for r in records:
        by_key.setdefault((r["type"], r["venue"], r["product"]), []).append(r)
    assert {k[0] for k in by_key} == set(KINDS)  # the recordings hold every kind
    for (kind, venue, product), expected in by_key.items():
        got = read(str(root), kind, venue, product, arrow=True, all_revisions=True)
        rows = [{"type": kind, **row} for row in got.to_pylist()]
        assert canon(rows) == canon(expected), (kind, venue, product)


def test_files_are_typed_and_carry_the_schema_version(replayed):
    root, _ = replayed
    files = sorted(p for p in root.rglob("*.parquet") if "_tmp" not in p.parts)
    assert files
    for path in files:
        meta = pq.read_metadata(path).metadata
        kind = meta[b"lobstream.kind"].decode()
        assert int(meta[b"lobstream.schema_version"]) == SCHEMA_VERSION
        assert pq.read_schema(path).remove_metadata().equals(SCHEMAS[kind])
        assert path.parent.parent.parent.parent.name == f"kind={kind}"


def test_duckdb_queries_match_the_records(replayed):
    root, records = replayed
    counts = query(str(root), "SELECT venue, product, count(*) AS n FROM summary "
                              "GROUP BY ALL ORDER BY venue, product")
    expected: Dict[tuple, int] = {}
    for r in records:
        if r["type"] == "summary":
            expected[(r["venue"], r["product"])] = expected.get((r["venue"], r["product"]), 0) + 1
    assert {(v, p): n for v, p, n in counts.itertuples(index=False)} == expected
    # prune by path and filter on columns: one day of one product's trades
    trades = [r for r in records if r["type"] == "trade" and r["product"] == "BTC-USD"]
    day = time.strftime("%Y-%m-%d", time.gmtime(trades[0]["ts_exchange"] / 1000))
    got = query(str(root), f"SELECT sum(base_size) AS v, count(*) AS n FROM trade WHERE "
                           f"product = 'BTC-USD' AND date = '{day}' AND side = 'buy'")
    buys = [t for t in trades if t["side"] == "buy"]
    assert got["n"][0] == len(buys)
    assert got["v"][0] == pytest.approx(sum(t["base_size"] for t in buys), rel=1e-12)
    finals = query(str(root), "SELECT count(*) AS n FROM bar_final")
    keys = {(r["venue"], r["product"], r["interval_s"], r["start"]) for r in records
            if r["type"] == "bar"}
    assert finals["n"][0] == len(keys)


def trade(i: int, ts: float, product: str = "BTC-USD") -> dict:
    return {"type": "trade", "venue": "coinbase", "product": product, "ts_exchange": ts,
            "ts_recv": ts + 2.5, "trade_id": str(i), "price": 100.0 + i, "size": 0.1,
            "side": "buy" if i % 2 else "sell", "base_size": 0.1, "notional": 10.0 + i / 10,
            "fills": 1}


DAY0 = 1_786_000_000_000 - 1_786_000_000_000 % 86_400_000  # a UTC midnight


def test_as_of_across_two_versions_a_delete_and_an_undelete(tmp_path):
    root = Root(str(tmp_path / "s"))
    ids = lambda df: list(df["trade_id"])  # noqa: E731
    w1 = StoreWriter(root, "replace")
    w1.add([trade(i, DAY0 + i * 1000) for i in range(10)])
    w1.commit()
    t1 = time.time_ns()
    w2 = StoreWriter(root, "replace")  # a re-import of the day: version 2 replaces it
    w2.add([trade(i, DAY0 + i * 1000) for i in range(5, 20)])
    w2.commit()
    t2 = time.time_ns()
    pday = PartitionDay("trade", "coinbase", "BTC-USD", time.strftime(
        "%Y-%m-%d", time.gmtime(DAY0 / 1000)))
    delete_day(root, pday, by="alice", reason="bad prints")
    t3 = time.time_ns()
    number = undelete_day(root, pday, 1, by="bob", reason="v1 was right")
    t4 = time.time_ns()
    rd = lambda at: read(root, "trade", "coinbase", "BTC-USD", as_of=at)  # noqa: E731
    assert ids(rd(t1)) == [str(i) for i in range(10)]
    assert ids(rd(t2)) == [str(i) for i in range(5, 20)]
    assert ids(rd(t3)) == []
    assert ids(rd(t4)) == ids(rd(None)) == [str(i) for i in range(10)]
    assert ids(rd(t1 - 10**12)) == []  # before anything was written
    # a time range within the day, as of the second version
    part = read(root, "trade", "coinbase", "BTC-USD", start=DAY0 + 7000, end=DAY0 + 9000,
                as_of=t2)
    assert ids(part) == ["7", "8"]
    versions = history(root, pday)
    assert [v.number for v in versions] == [1, 2, 3]
    assert [v.rows for v in versions] == [10, 15, 10]
    v2_end = versions[1].valid_to
    # each version ends when the next begins; the delete ended v2 before v3 began
    assert versions[0].valid_to == versions[1].valid_from < v2_end < versions[2].valid_from
    assert number == 3
    ops = [(e["op"], e.get("by"), e.get("reason")) for v in versions for e in v.entries]
    assert ("delete", "alice", "bad prints") in ops
    assert ("open", "bob", "undelete: v1 was right") in ops


def test_a_flow_version_grows_per_commit_and_compaction_bounds_files(tmp_path):
    root = Root(str(tmp_path / "s"))
    writer = StoreWriter(root, "append", max_files=4)
    stamps = []
    for epoch in range(11):
        writer.add([trade(epoch * 10 + i, DAY0 + (epoch * 10 + i) * 100.0) for i in range(10)])
        writer.commit()
        stamps.append(time.time_ns())
    pday = PartitionDay("trade", "coinbase", "BTC-USD", time.strftime(
        "%Y-%m-%d", time.gmtime(DAY0 / 1000)))
    files = writer._indexer(pday).state.files()
    assert len(files) <= 4
    for epoch, at in enumerate(stamps):  # every epoch's commit, exactly, as of its time
        got = read(root, "trade", "coinbase", "BTC-USD", as_of=at)
        assert list(got["trade_id"]) == [str(i) for i in range((epoch + 1) * 10)]
    # a restarted live writer continues the day instead of replacing it
    again = StoreWriter(root, "append")
    again.add([trade(500, DAY0 + 50_000.0)])
    again.commit()
    assert len(read(root, "trade", "coinbase", "BTC-USD")) == 111


def test_a_long_running_writer_keeps_only_recent_days_indexes(tmp_path):
    root = Root(str(tmp_path / "s"))
    writer = StoreWriter(root, "replace")
    for d in range(100):
        writer.add([trade(d, DAY0 + d * 86_400_000.0)])
        writer.commit()
    assert len(writer._index) <= 65
    writer.add([trade(1000, DAY0 + 1.0)])  # a late row for the first day continues it
    writer.commit()
    first = read(root, "trade", "coinbase", "BTC-USD", end=DAY0 + 86_400_000.0)
    assert list(first["trade_id"]) == ["0", "1000"]
    assert len(read(root, "trade", "coinbase", "BTC-USD")) == 101


def test_bulk_import_twice_gives_the_same_day_as_a_new_version(tmp_path):
    store = str(tmp_path / "s")
    capture = [str(RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz")]
    import_captures(store, capture)
    first = read(store, "summary", "coinbase", "ETH-USD")
    t = time.time_ns()
    import_captures(store, capture)
    assert read(store, "summary", "coinbase", "ETH-USD").equals(first)
    day = time.strftime("%Y-%m-%d", time.gmtime(first["ts_exchange"].iloc[0] / 1000))
    versions = history(Root(store), PartitionDay("summary", "coinbase", "ETH-USD", day))
    assert len(versions) == 2 and versions[0].valid_to is not None
    assert read(store, "summary", "coinbase", "ETH-USD", as_of=t).equals(first)


def test_bulk_import_converts_other_recorders_files(tmp_path):
    dump = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "deribit" / \
        "deribit_dump.jsonl"
    if not dump.exists():
        pytest.skip(f"{dump} (an ssc2ce recorder dump) is absent")
    dumps = [dump]
    store = str(tmp_path / "s")
    import_captures(store, [str(dumps[0])])
    got = query(store, "SELECT count(*) AS n FROM summary")
    assert got["n"][0] > 0


def test_odd_product_names_stay_inside_their_directory(tmp_path):
    root = Root(str(tmp_path / "s"))
    writer = StoreWriter(root)
    writer.add([trade(1, DAY0, product="../x/y"), trade(2, DAY0, product="BTC-27DEC24-60000-C")])
    writer.commit()
    assert component("../x/y") == "%2E%2E%2Fx%2Fy"
    assert list(read(root, "trade", "coinbase", "../x/y")["trade_id"]) == ["1"]
    assert not (tmp_path / "x").exists()
    got = query(root, "SELECT product FROM trade ORDER BY product")
    assert list(got["product"]) == ["../x/y", "BTC-27DEC24-60000-C"]


@pytest.mark.parametrize("env, message", [
    ({"LOBSTREAM_STORE_MODE": "merge"},
     "store.mode='merge'; valid choices: auto, append, replace"),
    ({"LOBSTREAM_STORE_KINDS": "summary,quotes"},
     "store.kinds: unknown value 'quotes'; valid choices: summary, trade, ticker, status, bar"),
    ({"LOBSTREAM_STORE_MAX_FILES": "0"}, "store.max_files='0': must be in [1, 1000]"),
    ({"LOBSTREAM_STORE_ROOOT": "x"}, "did you mean LOBSTREAM_STORE_ROOT?"),
])
def test_store_configuration_errors_are_one_line(env, message):
    from dataflows.config import ConfigError, load_config
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_store_mode_auto_replaces_when_replaying():
    from dataflows.config import load_config
    assert load_config({}).store["mode"] == "append"
    replaying = load_config({"LOBSTREAM_REPLAY": str(CAPTURES[0])})
    assert replaying.store["mode"] == "replace"


def test_the_store_command(tmp_path, capsys):
    from sinks.store.__main__ import main
    store = str(tmp_path / "s")
    assert main(["import", store, str(RECORDINGS / "deribit_gap.jsonl")]) == 0
    capsys.readouterr()
    assert main(["query", store, "SELECT product, count(*) AS n FROM summary GROUP BY ALL",
                 "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["product,n", "BTC-PERPETUAL,4"]
    day = "2020-06-22"
    assert main(["delete", store, "summary", "deribit", "BTC-PERPETUAL", day, "--by", "ops",
                 "--reason", "test"]) == 0
    out = capsys.readouterr().out
    assert "version 1: 4 rows in 1 files" in out and "delete" in out and "reason=test" in out
    assert main(["query", store, "SELECT count(*) AS n FROM summary", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "0"
    assert main(["query", store, "SELECT nonsense FROM summary"]) == 2
    assert "lobstream store:" in capsys.readouterr().err

"""Bars into SQLite, PostgreSQL and MariaDB: revisions, replays, at-least-once, bad DSNs.

The servers are real (Debian's binaries, started once per session as plain
processes on loopback ports with throwaway data directories, see
:mod:`tests.dbservers`); a test skips only when a server's binaries are absent.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Dict, Iterator, List

import orjson
import pytest

pytest.importorskip("psycopg")
pytest.importorskip("pymysql")

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow
from sinks.sql import COLUMNS, KEY, SqlBarSink, read_table
from state.events import Trade
from state.product import BarSpec, ProductState
from tests import dbservers

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
_tables = itertools.count()


def _server(kind: str) -> Iterator[dbservers.Server]:
    reason = dbservers.missing(kind)
    if reason:
        pytest.skip(reason)
    server = dbservers.start_postgres() if kind == "postgresql" else dbservers.start_mariadb()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[dbservers.Server]:
    yield from _server("postgresql")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[dbservers.Server]:
    yield from _server("mariadb")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def dsn(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bars.sqlite'}"
    return request.getfixturevalue("postgres" if request.param == "postgresql"
                                   else "mariadb").dsn


def table_name() -> str:
    return f"bars_{next(_tables)}"


def normal(rows: List[Dict]) -> List[Dict]:
    """Rows with booleans as bools (SQLite and MySQL return 0/1)."""
    return [{**r, "complete": bool(r["complete"])} for r in rows]


def _trade(ts: float, n: int, px: float = 100.0, side: str = "buy") -> Trade:
    return Trade("binance", "BTCUSDT", ts, ts + 5.0, str(n), px, 0.5, side, 0.5, px * 0.5, n)


def revised_bars() -> List[dict]:
    """Real bar records with revisions: a product state fed trades, some late."""
    state = ProductState(BarSpec((60_000,), 2000.0, 120_000.0))
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    trades = [_trade(t0 + 1000, 1), _trade(t0 + 61_000, 2, 101.0), _trade(t0 + 65_000, 3),
              _trade(t0 + 30_000, 4, 99.0, "sell"), _trade(t0 + 40_000, 5, 98.0, "sell"),
              _trade(t0 + 125_000, 6, 102.0), _trade(t0 + 90_000, 7, 103.0)]
    out: List[dict] = []
    for t in trades:
        out += state.on_item(t, 10, 1e9)
    out += state.finish("binance", "BTCUSDT")
    return [r for r in out if r["type"] == "bar"]


def final(bars: List[dict]) -> List[dict]:
    """What an upsert keeping the highest revision must hold, by brute force."""
    best: Dict[tuple, dict] = {}
    for b in bars:
        key = tuple(b[c] for c in KEY)
        if key not in best or (b["revision"], b["complete"]) >= \
                (best[key]["revision"], best[key]["complete"]):
            best[key] = b
    return [{c: best[k][c] for c in COLUMNS} for k in sorted(best)]


def run_bars(bars: List[dict], dsn: str, table: str) -> None:
    flow = Dataflow("bars")
    items = op.input("in", flow, TestingSource([(f"{b['venue']}:{b['product']}", b)
                                                for b in bars]))
    op.output("sql", items, SqlBarSink(dsn, table))
    run_main(flow)


def test_revisions_keep_the_highest_and_replays_change_nothing(dsn):
    bars = revised_bars()
    assert max(b["revision"] for b in bars) >= 2  # the late trades did revise
    table = table_name()
    run_bars(bars, dsn, table)
    first = normal(read_table(dsn, table))
    assert first == final(bars)
    # at-least-once: the same bars again, then old revisions alone, arrive later
    run_bars(bars, dsn, table)
    run_bars([b for b in bars if b["revision"] == 0], dsn, table)
    assert normal(read_table(dsn, table)) == first


def test_a_replay_run_twice_gives_identical_tables(dsn, tmp_path):
    table = table_name()
    cfg = Config(replay=[str(RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz")],
                 sinks=["sql", "jsonl"], jsonl_dir=str(tmp_path / "out"),
                 bar_intervals=(1000, 60_000), sql={"dsn": dsn, "table": table})
    run_main(build_flow(cfg))
    once = normal(read_table(dsn, table))
    run_main(build_flow(cfg))
    assert normal(read_table(dsn, table)) == once
    emitted = [orjson.loads(line) for f in sorted((tmp_path / "out").iterdir())
               for line in f.read_bytes().splitlines()]
    bars = [r for r in emitted if r["type"] == "bar"]
    assert len(once) == len({tuple(b[c] for c in KEY) for b in bars}) > 100
    # Two runs emitted every bar twice; the table holds each once, as emitted.
    assert once == final(bars)


def test_every_database_holds_the_same_rows(postgres, mariadb, tmp_path):
    bars = revised_bars()
    tables = []
    for dsn in (f"sqlite:///{tmp_path / 'same.sqlite'}", postgres.dsn, mariadb.dsn):
        table = table_name()
        run_bars(bars, dsn, table)
        tables.append(normal(read_table(dsn, table)))
    assert tables[0] == tables[1] == tables[2]


@pytest.mark.parametrize("bad, words", [
    ("oracle://x/y", "unknown scheme 'oracle'"),
    ("sqlite://relative", "expected sqlite:///PATH"),
    ("postgresql://u:secret@127.0.0.1:1/db", "Connection refused"),
    ("mysql://u:secret@127.0.0.1:1/db", "Can't connect"),
    ("postgresql://u@127.0.0.1:notaport/db", "the port is not a number"),
])
def test_a_wrong_dsn_fails_at_start_with_one_line(bad, words):
    with pytest.raises(ValueError) as info:
        SqlBarSink(bad, "bars")
    message = str(info.value)
    assert words in message and "\n" not in message and "secret" not in message


def test_config_rejects_an_unknown_sql_key(tmp_path):
    from dataflows.config import ConfigError, load_config
    path = tmp_path / "c.toml"
    path.write_text('[sql]\ndns = "sqlite:///x"\n')
    with pytest.raises(ConfigError, match=r"\[sql\]: unknown key 'dns'; did you mean dsn\?"):
        load_config({"LOBSTREAM_CONFIG": str(path)})

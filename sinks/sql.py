"""Bars upserted into SQLite, PostgreSQL or MySQL/MariaDB, one transaction per epoch.

The table (created if missing) has one row per ``(venue, product, interval_s,
start)``, the primary key, and every bar field as a column (:data:`COLUMNS`,
units as in :mod:`state.bars`: ``start``/``end`` epoch ms). An upsert replaces a
row only with a higher ``revision`` (or the same revision, now complete), so a
replay, an at-least-once restart that re-emits an epoch, or the same bar arriving
twice never changes a total: the table is a function of the bars, not of how
often they came.

**Unit of parallelism.** The partitions of :mod:`sinks.partitions` (each on its
products' worker), one connection per partition that received bars.
**Delivery.** Bars are buffered (deduplicated by key, highest revision kept) and
written in one transaction when Bytewax ends an epoch (``snapshot()``) and at
the end of input; at-least-once delivery is made exact by the upsert rule.
**Resume.** No state is needed: re-sent bars upsert to the same rows. When the
database is unreachable mid-run, one line is logged, the bars stay buffered and
the next epoch retries; past ``max_pending`` distinct bars the oldest are
dropped and counted.

Drivers: :mod:`sqlite3` (stdlib); psycopg 3 for PostgreSQL (the PostgreSQL
project's maintained adapter, binary wheels, and ``executemany`` pipelines the
batch in one round trip); PyMySQL for MySQL and MariaDB (maintained, pure
Python so it installs anywhere, and it folds ``executemany`` of an ``INSERT ...
VALUES`` into multi-row statements). SQLAlchemy Core was not used: the three
dialects differ exactly in the upsert clause, which Core also spells per
dialect, so it would add a dependency without removing code.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

from bytewax.outputs import StatefulSinkPartition

from sinks.partitions import ColocatedSink
from sinks.records import Record
from state.bars import BAR_FIELDS

log = logging.getLogger("lobstream.sql")

KEY = ("venue", "product", "interval_s", "start")
COLUMNS: Tuple[str, ...] = tuple(f for f in BAR_FIELDS if f != "type")
_INTEGER = {"start", "end", "trades", "buy_trades", "sell_trades", "fills", "missing_trades",
            "book_updates", "revision"}
_TEXT = {"venue": 32, "product": 64, "source": 16}
SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
CONNECT_TIMEOUT = 5


@dataclass(frozen=True)
class Dialect:
    name: str
    quote: str
    placeholder: str
    real: str
    boolean: str


SQLITE = Dialect("sqlite", '"', "?", "REAL", "INTEGER")
POSTGRES = Dialect("postgresql", '"', "%s", "DOUBLE PRECISION", "BOOLEAN")
MYSQL = Dialect("mysql", "`", "%s", "DOUBLE", "BOOLEAN")


def _q(d: Dialect, name: str) -> str:
    return f"{d.quote}{name}{d.quote}"


def create_sql(d: Dialect, table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the bars table."""
    cols = []
    for c in COLUMNS:
        if c in _TEXT:
            kind = f"VARCHAR({_TEXT[c]})" if d is MYSQL else "TEXT"
        elif c in _INTEGER:
            kind = "BIGINT" if d is not SQLITE else "INTEGER"
        elif c == "complete":
            kind = d.boolean
        else:
            kind = d.real
        cols.append(f"{_q(d, c)} {kind}{' NOT NULL' if c in KEY else ''}")
    key = ", ".join(_q(d, c) for c in KEY)
    return f"CREATE TABLE IF NOT EXISTS {_q(d, table)} ({', '.join(cols)}, PRIMARY KEY ({key}))"


def upsert_sql(d: Dialect, table: str) -> str:
    """One bar's upsert: a row is replaced only by a higher revision, or by the same
    revision once complete."""
    t = _q(d, table)
    names = ", ".join(_q(d, c) for c in COLUMNS)
    values = ", ".join([d.placeholder] * len(COLUMNS))
    rev, done = _q(d, "revision"), _q(d, "complete")
    rest = [c for c in COLUMNS if c not in KEY]
    if d is MYSQL:
        newer = f"(VALUES({rev}) > {rev} OR (VALUES({rev}) = {rev} AND VALUES({done}) " \
                f"AND NOT {done}))"
        # MySQL assigns left to right: the condition reads revision and complete, so
        # they are assigned last.
        order = [c for c in rest if c not in ("revision", "complete")] + ["complete", "revision"]
        sets = ", ".join(f"{_q(d, c)} = IF({newer}, VALUES({_q(d, c)}), {_q(d, c)})"
                         for c in order)
        return f"INSERT INTO {t} ({names}) VALUES ({values}) ON DUPLICATE KEY UPDATE {sets}"
    sets = ", ".join(f"{_q(d, c)} = excluded.{_q(d, c)}" for c in rest)
    key = ", ".join(_q(d, c) for c in KEY)
    return (f"INSERT INTO {t} ({names}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET "
            f"{sets} WHERE excluded.{rev} > {t}.{rev} OR (excluded.{rev} = {t}.{rev} "
            f"AND excluded.{done} AND NOT {t}.{done})")


def redact(dsn: str) -> str:
    """``dsn`` with its password replaced, for messages."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@", 1)
    return dsn


def connector(dsn: str) -> Tuple[Dialect, Callable[[], Any]]:
    """The dialect of ``dsn`` and a function that opens a connection (raises
    ValueError with one line for a DSN that cannot work)."""
    parts = urlsplit(dsn)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"sql.dsn={redact(dsn)!r}: unknown scheme {scheme!r}; valid choices: "
                         "sqlite:///PATH, postgresql://USER:PASS@HOST:PORT/DB, "
                         "mysql://USER:PASS@HOST:PORT/DB (or mariadb://)")
    if scheme == "sqlite":
        path = dsn[len("sqlite:///"):] if dsn.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"sql.dsn={dsn!r}: expected sqlite:///PATH (sqlite:////abs/path)")
        return SQLITE, lambda: sqlite3.connect(path, timeout=30, isolation_level=None)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    database = parts.path.lstrip("/")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"sql.dsn={redact(dsn)!r}: the port is not a number") from None
    if not parts.hostname or not database:
        raise ValueError(f"sql.dsn={redact(dsn)!r}: expected {scheme}://USER:PASS@HOST:PORT/DB")
    if scheme in ("postgresql", "postgres"):
        import psycopg

        return POSTGRES, lambda: psycopg.connect(
            host=parts.hostname, port=port or 5432, user=user or None, password=password or None,
            dbname=database, connect_timeout=CONNECT_TIMEOUT)
    import pymysql

    return MYSQL, lambda: pymysql.connect(
        host=parts.hostname, port=port or 3306, user=user or None, password=password,
        database=database, connect_timeout=CONNECT_TIMEOUT, autocommit=False)


def _one_line(ex: BaseException) -> str:
    text = " ".join(str(ex).split())
    return f"{type(ex).__name__}: {text[:300]}"


def row(rec: Record) -> Tuple[Any, ...]:
    return tuple(rec.get(c) for c in COLUMNS)


class BarTable:
    """One connection's upserts into the bars table."""

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn = dsn
        self.table = table
        self.dialect, self._connect = connector(dsn)
        self._upsert = upsert_sql(self.dialect, table)
        self._conn: Any = None

    def open(self) -> None:
        """Connect and create the table if missing; ValueError (one line) if not possible."""
        try:
            self._conn = self._connect()
            self._transaction([], create=True)
        except ValueError:
            raise
        except Exception as ex:  # every driver has its own error hierarchy
            self.close()
            raise ValueError(f"sql.dsn={redact(self.dsn)!r}: {_one_line(ex)}") from None

    def upsert(self, rows: Sequence[Tuple[Any, ...]]) -> None:
        """All ``rows`` in one transaction (reconnecting first if needed)."""
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._transaction(rows)
        except Exception:
            self.close()  # a broken connection is replaced on the next attempt
            raise

    def _transaction(self, rows: Sequence[Tuple[Any, ...]], create: bool = False) -> None:
        conn = self._conn
        cur = conn.cursor()
        try:
            if self.dialect is SQLITE:
                cur.execute("BEGIN")
            if create:
                cur.execute(create_sql(self.dialect, self.table))
            if rows:
                cur.executemany(self._upsert, rows)
            if self.dialect is SQLITE:
                cur.execute("COMMIT")
            else:
                conn.commit()
        except Exception:
            try:
                if self.dialect is SQLITE:
                    conn.execute("ROLLBACK")
                else:
                    conn.rollback()
            except Exception:
                pass  # the connection is gone; the caller reconnects
            raise
        finally:
            cur.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


class SqlBarSink(ColocatedSink[Record, None]):
    """Upsert the flow's bars into ``table`` at ``dsn``. The database is checked
    (and the table created) when the sink is made: a wrong DSN or an unreachable
    server stops the run at start with one line."""

    def __init__(self, dsn: str, table: str = "bars", max_pending: int = 100_000) -> None:
        self.dsn = dsn
        self.table = table
        self.max_pending = max_pending
        check = BarTable(dsn, table)
        check.open()
        check.close()

    def build_part(self, step_id: str, for_part: str,
                   resume_state: Optional[None]) -> "_SqlPartition":
        return _SqlPartition(BarTable(self.dsn, self.table), self.max_pending)


class _SqlPartition(StatefulSinkPartition[Record, None]):
    def __init__(self, table: BarTable, max_pending: int) -> None:
        self._table = table
        self._max = max_pending
        self._pending: "OrderedDict[Tuple[Any, ...], Record]" = OrderedDict()
        self._failing = False
        self.dropped = 0

    def write_batch(self, values: List[Record]) -> None:
        pending = self._pending
        for rec in values:
            if rec.get("type") != "bar":
                continue
            key = tuple(rec.get(c) for c in KEY)
            old = pending.get(key)
            if old is None or (rec["revision"], bool(rec["complete"])) >= \
                    (old["revision"], bool(old["complete"])):
                pending[key] = rec
        while len(pending) > self._max:
            pending.popitem(last=False)
            self.dropped += 1

    def snapshot(self) -> None:
        self._flush()
        return None

    def _flush(self) -> None:
        if not self._pending:
            return
        try:
            self._table.upsert([row(r) for r in self._pending.values()])
        except Exception as ex:
            if not self._failing:
                log.error("sql: cannot write %d bars to %s (%s); keeping them for the next "
                          "epoch", len(self._pending), redact(self._table.dsn), _one_line(ex))
            self._failing = True
            return
        if self._failing:
            log.info("sql: writing to %s again", redact(self._table.dsn))
        self._failing = False
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._table.close()


def read_table(dsn: str, table: str = "bars") -> List[Dict[str, Any]]:
    """Every row of the bars table, ordered by key (for checks and tools)."""
    dialect, connect = connector(dsn)
    conn = connect()
    try:
        cur = conn.cursor()
        order = ", ".join(_q(dialect, c) for c in KEY)
        names = ", ".join(_q(dialect, c) for c in COLUMNS)
        cur.execute(f"SELECT {names} FROM {_q(dialect, table)} ORDER BY {order}")
        return [dict(zip(COLUMNS, r)) for r in cur.fetchall()]
    finally:
        conn.close()

"""The store's typed columns per kind, and records <-> Arrow tables.

Every kind has one explicit Arrow schema, stable across versions: a Parquet file
carries :data:`SCHEMA_VERSION` and its kind in its key-value metadata, so a reader
can tell which layout it holds without guessing from column types. ``type``,
``venue`` and ``product`` are not columns: they are the ``kind=``, ``venue=`` and
``product=`` directories (hive partitioning), which is how DuckDB, pandas or any
engine prunes by path, and :mod:`sinks.store.read` adds them back.

Units are the records' own (:mod:`state.metrics`, :mod:`state.bars`,
:mod:`state.product`): times in epoch milliseconds (float, as the venues send
them: sub-millisecond digits are kept), bar ``start``/``end`` in integer epoch
milliseconds, sizes in the venue's unit (``base_size``/``volume`` in base
currency, ``notional``/``quote_volume`` in quote currency).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from sinks.store import KINDS
from state.bars import BAR_FIELDS
from state.metrics import SUMMARY_FIELDS

log = logging.getLogger("lobstream.store")

#: Bumped only when a column changes meaning or type; adding a kind does not.
SCHEMA_VERSION = 1
#: Record fields that are path components, not columns.
PATH_FIELDS = ("type", "venue", "product")

_F64, _I64, _I32, _STR, _BOOL = pa.float64(), pa.int64(), pa.int32(), pa.string(), pa.bool_()

_SUMMARY_TYPES = {"ts_exchange": _F64, "ts_recv": _F64, "seq": _I64, "bid_levels": _I32,
                  "ask_levels": _I32, "depth_limit": _I32}
_BAR_TYPES = {"start": _I64, "end": _I64, "trades": _I64, "buy_trades": _I64,
              "sell_trades": _I64, "fills": _I64, "missing_trades": _I64, "book_updates": _I64,
              "revision": _I32, "complete": _BOOL, "source": _STR}


def _schema(fields: Iterable[Tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


#: kind -> the Arrow schema of its files (columns in record order).
SCHEMAS: Dict[str, pa.Schema] = {
    "summary": _schema((f, _SUMMARY_TYPES.get(f, _F64)) for f in SUMMARY_FIELDS
                       if f not in PATH_FIELDS),
    "trade": _schema([("ts_exchange", _F64), ("ts_recv", _F64), ("trade_id", _STR),
                      ("price", _F64), ("size", _F64), ("side", _STR), ("base_size", _F64),
                      ("notional", _F64), ("fills", _I32)]),
    "ticker": _schema([("ts_exchange", _F64), ("ts_recv", _F64), ("mark", _F64),
                       ("index", _F64), ("funding_rate", _F64), ("last", _F64)]),
    "status": _schema([("ts_recv", _F64), ("state", _STR), ("reason", _STR),
                       ("detail", _STR)]),
    "bar": _schema((f, _BAR_TYPES.get(f, _F64)) for f in BAR_FIELDS if f not in PATH_FIELDS),
}
assert tuple(SCHEMAS) == KINDS
#: The column a partition-day is dated by and rows are sorted by: exchange time
#: where the kind has it (a summary without one falls back to receive time).
TIME_COLUMN = {"summary": "ts_exchange", "trade": "ts_exchange", "ticker": "ts_exchange",
               "status": "ts_recv", "bar": "start"}


def record_time(rec: Mapping[str, Any]) -> Optional[float]:
    """The epoch-ms time that dates a record's partition-day, or None if it has none."""
    value = rec.get(TIME_COLUMN[rec["type"]])
    if value is None:
        value = rec.get("ts_recv")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def metadata(kind: str) -> Dict[bytes, bytes]:
    return {b"lobstream.kind": kind.encode(),
            b"lobstream.schema_version": str(SCHEMA_VERSION).encode()}


def to_table(kind: str, rows: List[Mapping[str, Any]]) -> Tuple[pa.Table, int]:
    """``rows`` of one kind as a typed table (sorted by time), and how many rows did
    not fit the schema (skipped, logged once per kind)."""
    schema = SCHEMAS[kind]
    names = schema.names
    columns = {n: [r.get(n) for r in rows] for n in names}
    try:
        table = pa.table(columns, schema=schema)
        bad = 0
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        good = [r for r in rows if _fits(schema, r)]
        bad = len(rows) - len(good)
        table = pa.table({n: [r.get(n) for r in good] for n in names}, schema=schema)
        _warn_once(kind, next(r for r in rows if not _fits(schema, r)))
    order = pc.sort_indices(table, [(TIME_COLUMN[kind], "ascending")])
    return table.take(order).replace_schema_metadata(metadata(kind)), bad


def _fits(schema: pa.Schema, row: Mapping[str, Any]) -> bool:
    try:
        pa.table({n: [row.get(n)] for n in schema.names}, schema=schema)
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return False


_warned: set = set()


def _warn_once(kind: str, sample: Mapping[str, Any]) -> None:
    if kind not in _warned:
        _warned.add(kind)
        shown = {k: type(v).__name__ for k, v in list(sample.items())[:12]}
        log.warning("store: %s rows that do not fit the schema are skipped (first: %s)",
                    kind, shown)


def to_records(kind: str, venue: str, product: str, table: pa.Table) -> List[Dict[str, Any]]:
    """A table back as the records it came from (``type``/``venue``/``product`` first)."""
    head = {"type": kind, "venue": venue, "product": product}
    return [{**head, **row} for row in table.select(SCHEMAS[kind].names).to_pylist()]

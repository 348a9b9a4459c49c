"""Reading the store: rows of one (kind, venue, product) over a time range, as of a time.

Every read goes through the index, never a directory glob: the files of a
partition-day are those of the version in force at ``as_of`` (default: now), as
made by the entries stamped at or before ``as_of``. A read with ``as_of=T``
therefore returns exactly the rows committed by T, whatever was written,
compacted or deleted afterwards, in any process. (A commit is stamped just before
its entry is published, a rename; a read at wall time T can miss a commit stamped
in that millisecond, which a later ``as_of=T`` read includes.)

Bars are stored with every revision (the store keeps what was emitted); reads
return the final bar per ``(interval_s, start)`` by default: a bar built from
trades wins over a REST candle, then the highest ``revision``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, List, Optional, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from sinks.store.index import fold, read_entries
from sinks.store.layout import PartitionDay, Root, day_of
from sinks.store.schema import KINDS, SCHEMAS, TIME_COLUMN
from sinks.store.writer import read_files

When = Union[None, int, float, str, datetime]
#: The path columns every query sees besides a kind's own.
PARTITION_SCHEMA = pa.schema([("kind", pa.string()), ("venue", pa.string()),
                              ("product", pa.string()), ("date", pa.string())])


def to_ms(when: When) -> Optional[float]:
    """Epoch ms from epoch ms, an ISO-8601 string (UTC if it names no zone) or a datetime."""
    if when is None:
        return None
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return float(when)
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.timestamp() * 1000.0
    raise TypeError(f"expected epoch ms, an ISO-8601 time or a datetime, not "
                    f"{type(when).__name__}")


def to_ns(when: When) -> Optional[int]:
    """An as-of time in epoch nanoseconds (integers above 1e15 are taken as ns)."""
    if isinstance(when, int) and not isinstance(when, bool) and when > 10**15:
        return when
    ms = to_ms(when)
    return None if ms is None else int(round(ms * 1e6))


def _dates(root: Root, kind: str, venue: str, product: str, start: Optional[float],
           end: Optional[float]) -> List[str]:
    dates = root.partition_days(kind, venue, product)
    lo = day_of(start) if start is not None else None
    hi = day_of(end - 1e-3) if end is not None else None
    return [d for d in dates if (lo is None or d >= lo) and (hi is None or d <= hi)]


def resolve(root: Root, kind: str, venue: str, product: str, start: Optional[float] = None,
            end: Optional[float] = None, as_of: Optional[int] = None
            ) -> List[Tuple[PartitionDay, List[str]]]:
    """The partition-days in range and the files of each as of ``as_of`` (ns)."""
    if kind not in SCHEMAS:
        raise ValueError(f"kind {kind!r}; valid choices: {', '.join(KINDS)}")
    out = []
    for d in _dates(root, kind, venue, product, start, end):
        pd = PartitionDay(kind, venue, product, d)
        refs = fold(read_entries(root, pd), as_of).files()
        if refs:
            out.append((pd, [r.name for r in refs]))
    return out


def read(store: Union[str, Root], kind: str, venue: str, product: str, start: When = None,
         end: When = None, as_of: When = None, columns: Optional[Sequence[str]] = None,
         arrow: bool = False, all_revisions: bool = False) -> Any:
    """Rows of ``kind`` for ``venue``/``product`` with time in ``[start, end)``, as a
    pandas DataFrame (or a pyarrow Table with ``arrow=True``), sorted by time.

    ``as_of``: what a read at that time returned (epoch ms, ISO time, datetime, or
    epoch ns). ``all_revisions``: bars as stored, every revision of each."""
    root = store if isinstance(store, Root) else Root(store)
    lo, hi, at = to_ms(start), to_ms(end), to_ns(as_of)
    tables = [read_files(root, pd, names)
              for pd, names in resolve(root, kind, venue, product, lo, hi, at)]
    table = pa.concat_tables(tables) if tables else SCHEMAS[kind].empty_table()
    col = table[TIME_COLUMN[kind]]
    mask = None
    if lo is not None:
        mask = pc.greater_equal(col, lo)
    if hi is not None:
        upper = pc.less(col, hi)
        mask = upper if mask is None else pc.and_(mask, upper)
    if mask is not None:
        table = table.filter(mask)
    if kind == "bar" and not all_revisions:
        table = final_bars(table)
    table = table.take(pc.sort_indices(table, [(TIME_COLUMN[kind], "ascending")]))
    n = table.num_rows
    table = table.add_column(0, "product", pa.array([product] * n, pa.string()))
    table = table.add_column(0, "venue", pa.array([venue] * n, pa.string()))
    if columns is not None:
        table = table.select(list(columns))
    return table if arrow else table.to_pandas()


def final_bars(table: pa.Table) -> pa.Table:
    """One bar per ``(interval_s, start)``: trade-built over REST, then highest revision."""
    if table.num_rows == 0:
        return table
    rank = pc.if_else(pc.equal(table["source"], "trades"), 1, 0)
    ranked = table.append_column("_rank", rank).append_column(
        "_row", pa.array(range(table.num_rows), pa.int64()))
    order = ranked.sort_by([("interval_s", "ascending"), ("start", "ascending"),
                            ("_rank", "descending"), ("revision", "descending")])
    keys = order.select(["interval_s", "start"]).to_pylist()
    keep = [i for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]
    return order.take(keep).drop_columns(["_rank", "_row"])


def dataset(root: Root, kind: str, as_of: Optional[int] = None) -> ds.Dataset:
    """Every partition-day of ``kind`` as of ``as_of`` as one pyarrow dataset with
    the hive path columns (``kind``, ``venue``, ``product``, ``date``)."""
    paths = []
    for pd in root.walk_partitions():
        if pd.kind != kind:
            continue
        refs = fold(read_entries(root, pd), as_of).files()
        paths.extend(f"{root.data_dir(pd)}/{r.name}" for r in refs)
    schema = pa.unify_schemas([SCHEMAS[kind], PARTITION_SCHEMA])
    if not paths:
        return ds.dataset(schema.empty_table())
    return ds.dataset(paths, schema=schema, filesystem=root.fs, format="parquet",
                      partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
                      partition_base_dir=root.base)


def query(store: Union[str, Root], sql: str, as_of: When = None, arrow: bool = False) -> Any:
    """Run DuckDB ``sql`` over the store, where each kind is a view of that name
    (``summary``, ``trade``, ``ticker``, ``status``, ``bar``; bars with every
    revision, ``bar_final`` one per window) as of ``as_of``. A query DuckDB rejects
    raises ValueError with DuckDB's message on one line. DuckDB scans the
    Arrow datasets with projection and filter pushdown, so a query that names a
    venue, product or date reads only those files."""
    import duckdb

    root = store if isinstance(store, Root) else Root(store)
    at = to_ns(as_of)
    con = duckdb.connect()
    try:
        for kind in KINDS:
            con.register(kind, dataset(root, kind, at))
        con.execute("CREATE VIEW bar_final AS SELECT * EXCLUDE (_n) FROM ("
                    "SELECT *, row_number() OVER (PARTITION BY venue, product, interval_s, "
                    "start ORDER BY (source = 'trades') DESC, revision DESC) AS _n FROM bar) "
                    "WHERE _n = 1")
        try:
            result = con.execute(sql)
        except duckdb.Error as ex:  # the query's own mistake: one line, as ValueError
            raise ValueError(" ".join(str(ex).split())) from None
        return result.fetch_arrow_table() if arrow else result.df()
    finally:
        con.close()

"""Buffered, committed writes of records into the store: the one writer every path uses.

The flow sink, the bulk import and the backfill all write through a
:class:`StoreWriter`. It buffers rows per partition-day and, at :meth:`commit`,
writes one Parquet file per partition-day touched (its rows sorted by time, one
row group), then publishes one index entry per file. The data file is in place
before the entry that names it, so a crash at any point leaves either a file no
entry names (ignored; a leftover) or a complete commit, never half of one.

``mode`` says what a writer's first commit to a partition-day does: ``append``
continues the day's current version (a live flow restarted at noon keeps the
morning), ``replace`` starts the day afresh (a bulk import or a replay, run twice,
gives the same day, not twice the rows).

Files per partition-day stay bounded: when the open version holds more than
``max_files`` files, they are merged into one as a new version (the old files
stay, for reads as of earlier times).

:meth:`positions` and :meth:`rewind` are what a restart needs: the last entry
this writer committed per partition-day, and undoing every commit after such a
position (as a new version, never in place).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sinks.store.index import APPEND, DELETE, OPEN, FileRef, IndexWriter, fold
from sinks.store.layout import PartitionDay, Root, day_of, days_before, new_writer_id
from sinks.store.schema import SCHEMAS, TIME_COLUMN, metadata, record_time, to_table

APPEND_MODE, REPLACE_MODE = "append", "replace"
MODES = (APPEND_MODE, REPLACE_MODE)
#: Rows per row group in merged files: ~128k rows of summaries are ~10 MB
#: uncompressed, a good unit for column pruning and for readers' memory.
ROW_GROUP = 131_072


def parquet_bytes(table: pa.Table, row_group: int = ROW_GROUP) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group, compression="zstd")
    return sink.getvalue().to_pybytes()


def read_files(root: Root, pd: PartitionDay, names: Iterable[str]) -> pa.Table:
    """The rows of the files ``names`` of one partition-day as one table."""
    where = root.data_dir(pd)
    tables = [pq.read_table(f"{where}/{n}", filesystem=root.fs) for n in names]
    schema = SCHEMAS[pd.kind]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])


class StoreWriter:
    """Writes records of any kind, venue and product into one store root."""

    def __init__(self, root: Root, mode: str = APPEND_MODE, writer: Optional[str] = None,
                 max_files: int = 16, max_rows: int = 500_000, source: str = "") -> None:
        if mode not in MODES:
            raise ValueError(f"store mode {mode!r}; valid choices: {', '.join(MODES)}")
        self.root = root
        self.mode = mode
        self.writer = writer or new_writer_id()
        self.max_files = max_files
        self.max_rows = max_rows
        self.source = source
        self._buffer: Dict[PartitionDay, List[Mapping[str, Any]]] = {}
        self._buffered = 0
        self._index: Dict[PartitionDay, IndexWriter] = {}
        #: Partition-day -> the version this writer keeps appending to.
        self._open: Dict[PartitionDay, int] = {}
        #: Partition-day -> seq of this writer's last entry.
        self._positions: Dict[PartitionDay, int] = {}
        self.skipped = 0
        self.rows_written = 0

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Buffer records (of the store's kinds; others are ignored). A buffer past
        ``max_rows`` is committed at once, so memory stays bounded whatever the
        epoch length."""
        for rec in records:
            kind = rec.get("type")
            if kind not in SCHEMAS:
                continue
            ms = record_time(rec)
            venue, product = rec.get("venue"), rec.get("product")
            if ms is None or not isinstance(venue, str) or not isinstance(product, str):
                self.skipped += 1
                continue
            pd = PartitionDay(kind, venue, product, day_of(ms))
            self._buffer.setdefault(pd, []).append(rec)
            self._buffered += 1
        if self._buffered >= self.max_rows:
            self.commit()

    def commit(self) -> int:
        """Write and publish everything buffered; the number of rows committed."""
        buffer, self._buffer, self._buffered = self._buffer, {}, 0
        done = 0
        for pd, rows in buffer.items():
            table, bad = to_table(pd.kind, rows)
            self.skipped += bad
            if table.num_rows:
                self.publish(pd, table)
                done += table.num_rows
        self.rows_written += done
        self._evict()
        return done

    def _evict(self, keep_days: int = 2) -> None:
        """Forget the index entries of partition-days dated ``keep_days`` before the
        newest (a long-running flow would otherwise hold every day's); they are read
        again if such a day ever gets rows."""
        if len(self._index) <= 64:
            return
        horizon = days_before(max(pd.date for pd in self._index), keep_days)
        for pd in [pd for pd in self._index if pd.date < horizon]:
            del self._index[pd]

    def _indexer(self, pd: PartitionDay) -> IndexWriter:
        ix = self._index.get(pd)
        if ix is None:
            ix = self._index[pd] = IndexWriter(self.root, pd, self.writer)
        return ix

    def publish(self, pd: PartitionDay, table: pa.Table, base_mode: Optional[str] = None) -> None:
        """Write ``table`` as one new file of ``pd`` and commit it to this writer's
        open version (opening one first if needed)."""
        ix = self._indexer(pd)
        ref = self._write_file(pd, ix, table)
        version = self._open.get(pd)
        if version is not None and ix.state.current == version:
            entry = ix.commit(APPEND, version, [ref])
        else:
            mode = base_mode or self.mode
            # A second writer superseded our version: continue from theirs.
            base = ix.state.current if (mode == APPEND_MODE or version is not None) else None
            version = ix.next_version()
            entry = ix.commit(OPEN, version, [ref], base=base, source=self.source or None)
            self._open[pd] = version
        self._positions[pd] = entry["seq"]
        if len(ix.state.files()) > self.max_files:
            self.compact(pd)

    def _write_file(self, pd: PartitionDay, ix: IndexWriter, table: pa.Table) -> FileRef:
        name = f"{self.writer}-{ix.state.last_seq + 1:09d}.parquet"
        self.root.write_atomic(f"{self.root.data_dir(pd)}/{name}", parquet_bytes(table))
        return FileRef(name, table.num_rows)

    def supersede(self, pd: PartitionDay, table: pa.Table, drop: Iterable[str],
                  **extra: Any) -> int:
        """A new version of ``pd``: the current files minus ``drop``, plus ``table``
        as one new file (the backfill's write); its number."""
        ix = self._indexer(pd)
        refs = [self._write_file(pd, ix, table)] if table.num_rows else []
        version = ix.next_version()
        entry = ix.commit(OPEN, version, refs, base=ix.state.current, drop=sorted(drop),
                          **extra)
        self._positions[pd] = entry["seq"]
        self.rows_written += table.num_rows
        return version

    def compact(self, pd: PartitionDay) -> None:
        """Merge the current version's files into one, as a new version."""
        ix = self._indexer(pd)
        refs = ix.state.files()
        if len(refs) < 2:
            return
        merged = read_files(self.root, pd, [r.name for r in refs])
        merged = merged.take(pc.sort_indices(merged, [(TIME_COLUMN[pd.kind], "ascending")]))
        ref = self._write_file(pd, ix, merged.replace_schema_metadata(metadata(pd.kind)))
        version = ix.next_version()
        entry = ix.commit(OPEN, version, [ref], base=ix.state.current,
                          drop=[r.name for r in refs], reason="compaction")
        if pd in self._open:
            self._open[pd] = version
        self._positions[pd] = entry["seq"]

    def position_list(self, keep_days: int) -> List[List[Any]]:
        """``[kind, venue, product, date, seq]`` of this writer's last committed
        entry per partition-day, for days at most ``keep_days`` before the newest."""
        if not self._positions:
            return []
        horizon = days_before(max(pd.date for pd in self._positions), keep_days)
        return [[*pd, seq] for pd, seq in self._positions.items() if pd.date >= horizon]

    def adopt(self, positions: Mapping[PartitionDay, int]) -> None:
        """Continue, after :meth:`rewind`, the versions these positions were in."""
        for pd, seq in positions.items():
            self._positions[pd] = seq
            current = self._indexer(pd).state.current
            if current is not None:
                self._open[pd] = current

    def rewind(self, positions: Mapping[str, int], since_date: str) -> int:
        """Undo this writer's commits after ``positions`` (partition-day path ->
        seq, from :meth:`position_list` before a crash), on every partition-day dated
        ``since_date`` or later; the number of partition-days rewound. The days go
        back to exactly the files they had at those positions, as new versions."""
        rewound = 0
        for pd in self.root.walk_partitions():
            if pd.date < since_date:
                continue
            ix = self._indexer(pd)
            mine = [e["seq"] for e in ix.entries if e["writer"] == self.writer]
            target = positions.get(pd.rel(), None)
            if not mine or (target is not None and max(mine) <= target):
                continue
            if target is None:
                target = min(mine) - 1
            then = fold(ix.entries, upto_seq=target)
            keep = {f.name for f in then.files()}
            now = ix.state
            if then.current is None:
                if now.current is not None:
                    ix.commit(DELETE, reason="rewind after restart", by=self.writer)
            else:
                drop = [f.name for f in now.versions[then.current].files if f.name not in keep]
                ix.commit(OPEN, ix.next_version(), [], base=then.current, drop=drop,
                          reason="rewind after restart")
            self._open.pop(pd, None)
            rewound += 1
        return rewound


def delete_day(root: Root, pd: PartitionDay, by: str, reason: str) -> None:
    """Logically delete ``pd``: its current version ends now (nothing is removed)."""
    ix = IndexWriter(root, pd, new_writer_id())
    if ix.state.current is None:
        raise ValueError(f"{pd.rel()} has no current version to delete")
    ix.commit(DELETE, by=by, reason=reason)


def undelete_day(root: Root, pd: PartitionDay, version: int, by: str, reason: str) -> int:
    """Bring ``version`` of ``pd`` back as a new version from now; its number."""
    ix = IndexWriter(root, pd, new_writer_id())
    if version not in ix.state.versions:
        raise ValueError(f"{pd.rel()} has no version {version}; "
                         f"versions: {sorted(ix.state.versions)}")
    number = ix.next_version()
    ix.commit(OPEN, number, [], base=version, by=by, reason=f"undelete: {reason}")
    return number


def compact_all(root: Root, max_files: int = 1) -> List[Tuple[PartitionDay, int]]:
    """Merge every partition-day whose current version has more than ``max_files``
    files (offline compaction); the days merged and their file counts before."""
    done = []
    writer = StoreWriter(root, max_files=max_files)
    for pd in root.walk_partitions():
        count = len(writer._indexer(pd).state.files())
        if count > max_files:
            writer.compact(pd)
            done.append((pd, count))
    return done

"""A bitemporal, append-only Parquet tick store (needs the ``store`` extra).

Summaries, trades, tickers, statuses and bars land in hive-partitioned Parquet
(``kind=/venue=/product=/date=``) under a local directory or an object-store URI.
Nothing is updated or deleted in place: every write is a new version of the
partition-days it covers, recorded in an append-only index
(:mod:`sinks.store.index`), so any past read can be repeated with ``as_of``.

Entry points: :class:`~sinks.store.sink.StoreSink` (the flow's sink),
:func:`~sinks.store.read.read` and :func:`~sinks.store.read.query` (pandas/Arrow,
DuckDB), :mod:`sinks.store.bulk` (captures straight into the store) and
``python -m sinks.store`` (query, import, versions, delete, undelete, compact).
"""

from __future__ import annotations

#: The record kinds the store keeps (each has a schema in :mod:`sinks.store.schema`).
#: Declared here, free of pyarrow, so configuration can name them without the extra.
KINDS = ("summary", "trade", "ticker", "status", "bar")

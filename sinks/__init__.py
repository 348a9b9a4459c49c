"""Where records go. Each sink is one module; choosing them is configuration.

A sink factory takes the run's options and returns a Bytewax sink that consumes
``(key, record)`` pairs, where ``record`` is a plain dict (see
:mod:`sinks.records`). Adding Parquet, Kafka or a database is one module plus one
line in :data:`SINKS`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from bytewax.outputs import Sink

from sinks.jsonl import JsonlSink
from sinks.stdout import StdoutSink

SinkFactory = Callable[[Dict[str, Any]], Sink]


def _store(options: Dict[str, Any]) -> Sink:
    from sinks.store.sink import StoreSink  # pyarrow: the ``store`` extra

    store = options["store"]
    return StoreSink(store["root"], store["mode"], tuple(store["kinds"]), store["max_files"],
                     store["max_rows"], store["resume"])


def _sql(options: Dict[str, Any]) -> Sink:
    from sinks.sql import SqlBarSink  # drivers: the ``sql`` extra (SQLite needs none)

    return SqlBarSink(options["sql"]["dsn"], options["sql"]["table"])


#: Sink name -> factory. ``options`` holds ``jsonl_dir`` and the ``[store]`` and ``[sql]``
#: tables.
SINKS: Dict[str, SinkFactory] = {
    "jsonl": lambda options: JsonlSink(options.get("jsonl_dir", "out")),
    "stdout": lambda options: StdoutSink(),
    "store": _store,
    "sql": _sql,
}

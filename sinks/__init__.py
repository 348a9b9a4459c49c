"""Where records go. Each sink is one module; choosing them is configuration.

A sink factory takes the run's sink options and returns a Bytewax sink that
consumes ``(key, record)`` pairs, where ``record`` is a plain dict (see
:mod:`sinks.records`). Adding Parquet, Kafka or a database is one module plus one
line in :data:`SINKS`.

Options (all optional): ``jsonl_dir`` (default ``out``), ``jsonl_mode``
(``append`` or ``replace``) and ``jsonl_max_open`` (open files per worker,
default 64). A factory raises ``ValueError`` with one line for an option that
cannot work, including an output directory that cannot be created or written,
so that the run fails at start.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from bytewax.outputs import Sink

from sinks.files import DEFAULT_MAX_OPEN, check_options, check_output_dir
from sinks.jsonl import JsonlSink
from sinks.stdout import StdoutSink

SinkFactory = Callable[[Dict[str, Any]], Sink]


def _jsonl(options: Dict[str, Any]) -> JsonlSink:
    directory = options.get("jsonl_dir", "out")
    mode = options.get("jsonl_mode", "append")
    max_open = options.get("jsonl_max_open", DEFAULT_MAX_OPEN)
    check_options(mode, max_open, prefix="jsonl_")
    try:
        check_output_dir(directory)
    except ValueError as ex:
        raise ValueError(f"jsonl_dir: {ex}") from None
    return JsonlSink(directory, mode=mode, max_open=max_open)


def _store(options: Dict[str, Any]) -> Sink:
    from sinks.store.sink import StoreSink  # pyarrow: the ``store`` extra

    store = options["store"]
    return StoreSink(store["root"], store["mode"], tuple(store["kinds"]), store["max_files"],
                     store["max_rows"], store["resume"])


def _sql(options: Dict[str, Any]) -> Sink:
    from sinks.sql import SqlBarSink  # drivers: the ``sql`` extra (SQLite needs none)

    return SqlBarSink(options["sql"]["dsn"], options["sql"]["table"])


def _kafka(options: Dict[str, Any]) -> Sink:
    from sinks.kafka import KafkaRecordSink  # imported only when used: the kafka extra

    return KafkaRecordSink(options["kafka"])


#: Sink name -> factory. ``options`` holds the ``jsonl_*`` settings and the
#: ``[store]``, ``[sql]`` and ``[kafka]`` tables.
SINKS: Dict[str, SinkFactory] = {
    "jsonl": _jsonl,
    "stdout": lambda options: StdoutSink(),
    "store": _store,
    "sql": _sql,
    "kafka": _kafka,
}

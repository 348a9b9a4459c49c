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


def _kafka(options: Dict[str, Any]) -> Sink:
    from sinks.kafka import KafkaRecordSink  # imported only when used: the kafka extra

    return KafkaRecordSink(options["kafka"])


#: Sink name -> factory. ``options`` holds the ``[sinks]`` configuration table.
SINKS: Dict[str, SinkFactory] = {
    "jsonl": lambda options: JsonlSink(options.get("jsonl_dir", "out")),
    "stdout": lambda options: StdoutSink(),
    "kafka": _kafka,
}

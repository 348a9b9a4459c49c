"""Records to Kafka topics, one per record type, through Bytewax's ``KafkaSink``.

Each record is one message: key ``venue:product`` (so one product's records stay
in order in one partition of each topic: Bytewax's sink ignores
``KafkaSinkMessage.partition``, the key decides), value the record's JSON as the
JSON-lines sink writes it (:mod:`sinks.records`), topic by ``type`` from the
``[kafka]`` table; types without a topic (alerts always) are not published.

Unit of parallelism: the worker, one producer each (a ``DynamicSink``): a
product's records are produced on the worker holding its book. Delivery:
at-least-once. ``KafkaSink`` flushes after every batch and the producer is
idempotent with no delivery deadline (:mod:`sources.kafka.client`): while the
brokers are down the flush waits and the dataflow stalls behind it, one log line
says so, and nothing is dropped. After a restart with recovery, the records of the
last epoch are produced again; with Kafka input they carry the same ``src``
(:mod:`dataflows.kafka_book`), by which a consumer drops the repeats. Resume: no
state of its own.
"""

from __future__ import annotations

from typing import Any, Dict, List

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.records import Keyed
from sources.kafka.client import Health, kafka, producer_config, wait_for_topics
from sources.kafka.settings import KafkaSettings


class KafkaRecordSink(DynamicSink[Keyed]):
    """Publishes keyed records to the configured topics (checked to exist now)."""

    def __init__(self, settings: KafkaSettings) -> None:
        kafka()  # a one-line error if the extra is missing
        from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage

        self.topics = settings.output_topics()
        wait_for_topics(settings, sorted(set(self.topics.values())), "output")
        self.health = Health("output producer", "records are held until they return; "
                             "nothing is dropped")
        self._sink = KafkaSink(settings.brokers, None,
                               add_config=producer_config(settings, self.health))
        self._message = KafkaSinkMessage

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_RecordPartition":
        return _RecordPartition(self, self._sink.build(step_id, worker_index, worker_count))


class _RecordPartition(StatelessSinkPartition[Keyed]):
    def __init__(self, sink: KafkaRecordSink, inner: StatelessSinkPartition[Any]) -> None:
        self._topics: Dict[str, str] = sink.topics
        self._message = sink._message
        self._inner = inner

    def write_batch(self, items: List[Keyed]) -> None:
        topics, message, dumps = self._topics, self._message, orjson.dumps
        batch = []
        for _, rec in items:
            topic = topics.get(rec["type"])
            if topic is not None:
                batch.append(message(f"{rec['venue']}:{rec['product']}".encode(), dumps(rec),
                                     topic=topic))
        if batch:
            self._inner.write_batch(batch)

    def close(self) -> None:
        self._inner.close()

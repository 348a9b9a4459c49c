"""The ``[kafka]`` configuration table: brokers, topics, start position, pass-through.

Pure (no confluent-kafka import), so the configuration layer validates the table
at start whether or not the extra is installed. What librdkafka itself accepts
(property names, value syntax) is checked when a flow that uses Kafka is built
(:func:`sources.kafka.client.check_client_config`), against the installed library.

Topic names follow Kafka's rules (``[a-zA-Z0-9._-]``, at most 249 characters, not
``.`` or ``..``). The raw and control topics must differ from each other and from
every output topic (a flow that wrote its summaries into its own input would read
them back as frames); output types may share a topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

#: Record type -> its output topic key in ``[kafka]``.
OUTPUT_KEYS: Dict[str, str] = {"summary": "summary_topic", "trade": "trade_topic",
                               "bar": "bar_topic", "ticker": "ticker_topic",
                               "status": "status_topic"}
STARTS = ("earliest", "latest")
#: librdkafka properties lobstream sets itself; the pass-through may not override them.
RESERVED = frozenset({
    "bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.commit",
    "enable.auto.offset.store", "enable.partition.eof", "auto.offset.reset",
    "error_cb", "on_delivery", "stats_cb", "throttle_cb", "logger", "oauth_cb",
})
_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_PROPERTY = re.compile(r"[a-z][a-z0-9._]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


@dataclass(frozen=True)
class KafkaSettings:
    """What the ``[kafka]`` table says (defaults: a broker on this host)."""

    brokers: Tuple[str, ...] = ("127.0.0.1:9092",)
    raw_topic: str = "lobstream.raw"
    control_topic: str = "lobstream.control"
    #: Record type -> output topic; types without one are not published.
    topics: Mapping[str, str] = field(default_factory=lambda: {
        "summary": "lobstream.summaries", "trade": "lobstream.trades",
        "bar": "lobstream.bars", "ticker": "lobstream.tickers",
        "status": "lobstream.statuses"})
    #: Where analytics without a resume position start: the oldest retained frame
    #: (rebuild history) or the newest (live only; books ask the capture for
    #: snapshots).
    start: str = "earliest"
    #: Keep reading at the end of the topic (a service) or stop there (reprocessing).
    tail: bool = True
    #: Seconds between fresh snapshots the capture asks for, per product (0: never).
    snapshot_refresh: float = 600.0
    #: Seconds to wait for unreachable brokers at start (0: wait as long as it takes).
    connect_timeout: float = 0.0
    #: librdkafka properties passed through to every client (SASL, TLS, ...).
    client: Mapping[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.brokers)

    def output_topics(self) -> Dict[str, str]:
        """Record type -> topic, for the types that are published."""
        return {kind: topic for kind, topic in self.topics.items() if topic}


def check_broker(text: str) -> Optional[str]:
    """None if ``text`` is ``host:port``, else why not."""
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        return "expected HOST:PORT, e.g. 127.0.0.1:9092"
    return None


def check_topic(name: str) -> Optional[str]:
    """None if ``name`` is a valid Kafka topic name, else why not."""
    if not _TOPIC.fullmatch(name) or name in (".", ".."):
        return ("a Kafka topic name is 1-249 letters, digits, '.', '_' or '-' (not '.' "
                "or '..')")
    return None


def parse_client(value: Any) -> Dict[str, str]:
    """The pass-through properties: a TOML table, or ``k=v,k=v`` from the
    environment. Values become strings, as librdkafka takes them."""
    if isinstance(value, str):
        table: Dict[str, Any] = {}
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            key, sep, val = part.partition("=")
            if not sep:
                raise ValueError(f"kafka.config: {part[:60]!r} is not KEY=VALUE")
            table[key.strip()] = val.strip()
        value = table
    if not isinstance(value, dict):
        raise ValueError("kafka.config: expected a [kafka.config] table of librdkafka "
                         "properties")
    out: Dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _PROPERTY.fullmatch(key):
            raise ValueError(f"kafka.config: {str(key)[:60]!r} is not a librdkafka property "
                             "name (e.g. security.protocol)")
        if key in RESERVED:
            raise ValueError(f"kafka.config: {key} is set by lobstream and cannot be passed "
                             "through" + (" (use kafka.brokers)" if "broker" in key else ""))
        if isinstance(val, bool):
            val = "true" if val else "false"
        if not isinstance(val, (str, int, float)):
            raise ValueError(f"kafka.config: {key} must be a string or a number")
        out[key] = str(val)
    return out


def build_settings(values: Mapping[str, Any], client: Mapping[str, str]) -> KafkaSettings:
    """A :class:`KafkaSettings` from validated scalar values (the configuration
    layer checks types and ranges); raises ValueError naming what is wrong."""
    brokers = tuple(str(b).strip() for b in values["brokers"] if str(b).strip())
    if not brokers:
        raise ValueError("kafka.brokers is empty; e.g. 127.0.0.1:9092")
    for broker in brokers:
        problem = check_broker(broker)
        if problem:
            raise ValueError(f"kafka.brokers: {broker[:80]!r}: {problem}")
    topics = {kind: str(values[key]) for kind, key in OUTPUT_KEYS.items()}
    names = {"raw_topic": str(values["raw_topic"]), "control_topic": str(values["control_topic"])}
    names.update({OUTPUT_KEYS[k]: t for k, t in topics.items() if t})
    for key, name in names.items():
        problem = check_topic(name)
        if problem:
            raise ValueError(f"kafka.{key}={name[:80]!r}: {problem}")
    raw, control = names["raw_topic"], names["control_topic"]
    if raw == control:
        raise ValueError(f"kafka.raw_topic and kafka.control_topic are both {raw!r}; they "
                         "must differ")
    for kind, topic in topics.items():
        if topic in (raw, control):
            raise ValueError(f"kafka.{OUTPUT_KEYS[kind]}={topic!r} is also the "
                             f"{'raw' if topic == raw else 'control'} topic: output written "
                             "there would be read back as input")
    start = str(values["start"])
    if start not in STARTS:
        raise ValueError(f"kafka.start={start[:40]!r}; valid choices: {', '.join(STARTS)}")
    return KafkaSettings(brokers=brokers, raw_topic=raw, control_topic=control,
                         topics=topics, start=start,
                         tail=bool(values["tail"]),
                         snapshot_refresh=float(values["snapshot_refresh"]),
                         connect_timeout=float(values["connect_timeout"]), client=dict(client))

"""confluent-kafka clients as lobstream configures them, topic checks, and error lines.

Every client gets the ``[kafka]`` brokers and pass-through properties, plus what
lobstream needs of it:

* producers are **idempotent** (``enable.idempotence``: a retried batch is neither
  duplicated nor reordered, so one connection's frames stay in order in their
  partition) and hold undelivered messages **without a deadline**
  (``message.timeout.ms=0``): while the brokers are down a producer's ``flush``
  waits, the dataflow stalls behind it, and nothing is dropped; the capture's
  bounded inbox then sheds frames with an explicit ``overflow`` (its books resync)
  rather than growing. ``message.max.bytes`` is 64 MiB, the largest websocket
  frame lobstream accepts (a 46,000-level Coinbase snapshot is 5.1 MB, 1.2 MB with
  the default lz4 compression); the raw topic must accept it too
  (``max.message.bytes``, see :mod:`sources.kafka.topics`);
* librdkafka's own log (a line per reconnect attempt) goes to the debug log, and
  its error callbacks go through a :class:`Health`, which writes one line when
  the brokers become unreachable, one when they are back, and one per other kind
  of error.

Topics are never created here: :func:`wait_for_topics` lists the cluster's topics
(a metadata request for *all* topics, which never auto-creates one, unlike a
request naming a topic on a broker with ``auto.create.topics.enable``) and fails
with one line for a missing one.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Optional, Sequence, Set

from sources.kafka.settings import KafkaSettings
from sources.runtime import shutdown

log = logging.getLogger("lobstream.kafka")
_librdkafka = logging.getLogger("lobstream.kafka.librdkafka")

#: Seconds between reports while waiting for unreachable brokers at start.
REPORT_EVERY = 60.0
#: Seconds one metadata request may take.
METADATA_TIMEOUT = 5.0
#: Seconds each attempt takes while waiting for brokers at start (librdkafka retries
#: within it; a refused connection is only reported when it runs out).
WAIT_ATTEMPT = 1.0
#: The largest message a producer sends (the websocket frame limit).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class KafkaSetupError(ValueError):
    """Kafka cannot be used as configured; the message is one line."""


def kafka() -> Any:
    """The confluent_kafka module, or a one-line KafkaSetupError naming the extra."""
    try:
        import confluent_kafka
        import confluent_kafka.admin  # noqa: F401  (a submodule: not loaded by the package)
    except ImportError:
        raise KafkaSetupError("Kafka input and output need confluent-kafka: "
                              "pip install -e '.[kafka]'") from None
    return confluent_kafka


class _DebugLog:
    """A logger for librdkafka that files everything under debug: :class:`Health`
    reports what an operator must know, once."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        _librdkafka.debug(msg, *args)


#: Error codes that mean "the brokers cannot be reached".
def _unreachable_codes() -> Set[int]:
    e = kafka().KafkaError
    return {e._TRANSPORT, e._ALL_BROKERS_DOWN, e._RESOLVE, e._TIMED_OUT}


class Health:
    """One client's error reporting: unreachable brokers are one line when they
    go and one when they are back, any other error one line per code, then counted.

    ``consequence`` says what the client does meanwhile (producers hold their
    messages, consumers resume where they were)."""

    def __init__(self, what: str, consequence: str) -> None:
        self.what = what
        self.consequence = consequence
        self.down_since: Optional[float] = None
        self.errors: Dict[int, int] = {}
        self.failed = 0
        self._unreachable = _unreachable_codes()

    def error(self, err: Any) -> None:
        """librdkafka's ``error_cb``, and consumer errors."""
        code = err.code()
        if code in self._unreachable:
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.error("kafka: %s: brokers unreachable (%s); %s", self.what, err.str(),
                          self.consequence)
            return
        self.errors[code] = self.errors.get(code, 0) + 1
        if self.errors[code] == 1:
            log.error("kafka: %s: %s (further errors of this kind are counted)", self.what,
                      err.str())

    def ok(self) -> None:
        """The client talked to a broker again."""
        if self.down_since is not None:
            log.warning("kafka: %s: brokers reachable again after %.0f s", self.what,
                        time.monotonic() - self.down_since)
            self.down_since = None

    def delivered(self, err: Any, msg: Any) -> None:
        """A producer's ``on_delivery``: failures are counted and reported."""
        if err is None:
            self.ok()
            return
        self.failed += 1
        self.error(err)


def client_config(settings: KafkaSettings, health: Optional[Health] = None,
                  **own: Any) -> Dict[str, Any]:
    """A client configuration: lobstream's defaults ``own`` may be overridden by the
    pass-through properties, the brokers and callbacks may not."""
    config: Dict[str, Any] = dict(own)
    config.update(settings.client)
    config["bootstrap.servers"] = settings.bootstrap
    config["logger"] = _DebugLog()
    if health is not None:
        config["error_cb"] = health.error
    return config


def producer_config(settings: KafkaSettings, health: Health, **own: Any) -> Dict[str, Any]:
    """A producer's configuration (see the module docstring)."""
    config = client_config(settings, health, **{
        "enable.idempotence": True, "message.timeout.ms": 0, "linger.ms": 5,
        "compression.type": "lz4", "message.max.bytes": MAX_MESSAGE_BYTES, **own})
    config["on_delivery"] = health.delivered
    return config


def check_client_config(settings: KafkaSettings) -> None:
    """Build (and drop) a producer and a consumer with the pass-through properties,
    so a misspelt property or a bad value fails at start with librdkafka's own
    one-line reason."""
    ck = kafka()
    for make, extra in ((ck.Producer, {}), (ck.Consumer, {"group.id": "lobstream-check"})):
        try:
            client = make(client_config(settings, **extra))
        except ck.KafkaException as ex:
            raise KafkaSetupError(f"kafka.config: {ex.args[0].str()}") from None
        if make is ck.Consumer:
            client.close()


def list_topics(settings: KafkaSettings,
                timeout: float = METADATA_TIMEOUT) -> Dict[str, int]:
    """Every topic of the cluster with its partition count (raises KafkaException
    when no broker answers within ``timeout``)."""
    ck = kafka()
    admin = ck.admin.AdminClient(client_config(settings))
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions or {}) for name, t in metadata.topics.items()
            if t.error is None}


def wait_for_topics(settings: KafkaSettings, topics: Sequence[str], role: str,
                    clock: Callable[[], float] = time.monotonic) -> Dict[str, int]:
    """The partition counts of ``topics``, once the brokers answer.

    While they are unreachable this waits (one line at once, then one every
    :data:`REPORT_EVERY` s), for at most ``connect_timeout`` seconds if set, and
    stops early when a shutdown is requested. A topic that does not exist is a
    KafkaSetupError: lobstream never creates topics."""
    ck = kafka()
    started = clock()
    reported = -REPORT_EVERY
    while True:
        try:
            found = list_topics(settings, WAIT_ATTEMPT)
            break
        except ck.KafkaException as ex:
            waited = clock() - started
            reason = ex.args[0].str()
            if settings.connect_timeout and waited >= settings.connect_timeout:
                raise KafkaSetupError(f"kafka: brokers {settings.bootstrap} unreachable for "
                                      f"{waited:.0f} s ({reason}); is the broker running?") \
                    from None
            if shutdown.requested():
                raise KafkaSetupError("kafka: stopped while waiting for the brokers") from None
            if waited - reported >= REPORT_EVERY:
                reported = waited
                log.error("kafka: %s: brokers %s unreachable (%s); waiting for them%s", role,
                          settings.bootstrap, reason,
                          f" for up to {settings.connect_timeout:g} s"
                          if settings.connect_timeout else "")
            time.sleep(WAIT_ATTEMPT)
    if reported >= 0:
        log.warning("kafka: %s: brokers %s reachable after %.0f s", role, settings.bootstrap,
                    clock() - started)
    for topic in topics:
        if topic not in found:
            raise KafkaSetupError(
                f"kafka topic {topic!r} does not exist on {settings.bootstrap}; lobstream "
                f"never creates topics: create it (python -m sources.kafka.topics creates "
                f"the configured ones) or fix the name")
    return {topic: found[topic] for topic in topics}

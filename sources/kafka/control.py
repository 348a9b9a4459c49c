"""The control topic: analytics ask the capture for fresh snapshots through Kafka.

A dataflow has no feedback edges, and the analytics do not own the exchange
connections, so what only they can see must reach the capture some other way: a
book that crossed or locked (the feed's checks all passed, the book is still
wrong), a book whose snapshot retention deleted, a book that started at the end
of the topic and has none. Each such book becomes one small message on the control
topic, key ``venue:product``, value::

    {"ts": <capture time it refers to, epoch ms>, "venue": "..", "product": "..",
     "reason": "crossed" | "locked" | "snapshot_lost" | "no_snapshot",
     "detail": "..", "by": "<host>:<pid>"}

The capture reads the topic on a thread (:class:`ControlReader`) and gets the
product a fresh snapshot on the connection that carries it, as its periodic
refresh does (:mod:`sources.kafka.tap`): the snapshot reaches every analytics flow
through the raw topic.

Requests are **at most once** and idempotent. The reader starts at the end of the
topic (requests made while no capture ran are moot: a starting capture subscribes
fresh snapshots for everything) and ignores a request whose ``ts`` is not after
the last snapshot the capture asked for the product (:class:`CaptureContext`):
several analytics flows asking about the same crossing cause one resync, and an
analytics flow catching up on old frames cannot make the capture resync products
that have been rebuilt since. Bounded: only configured products, one resync per
product per :data:`MIN_INTERVAL_MS` whatever a (misbehaving) writer sends, at
most :data:`MAX_TEXT` characters of detail.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Dict, FrozenSet, Optional, Tuple

import orjson

from sources.kafka.client import Health, client_config, kafka, producer_config
from sources.kafka.settings import KafkaSettings
from sources.kafka.tap import CaptureContext
from sources.runtime import shutdown
from sources.runtime.resync import ResyncRequests
from sources.venues.base import safe_text, valid_product

log = logging.getLogger("lobstream.kafka.control")

REASONS = frozenset({"crossed", "locked", "snapshot_lost", "no_snapshot"})
MAX_TEXT = 300
MIN_INTERVAL_MS = 1000.0
#: A request from further in the future than this is not believed.
MAX_AHEAD_MS = 60_000.0
#: Seconds a control message may wait for the brokers before it is given up:
#: a request delivered much later is about a book that has moved on.
SEND_TIMEOUT_MS = 60_000


def encode_request(venue: str, product: str, ts: float, reason: str, detail: str) -> bytes:
    return orjson.dumps({"ts": ts, "venue": venue, "product": product, "reason": reason,
                         "detail": safe_text(detail, MAX_TEXT),
                         "by": f"{socket.gethostname()}:{os.getpid()}"})


Request = Tuple[str, str, float, str, str]  # venue, product, ts, reason, detail


def parse_request(value: Optional[bytes]) -> Optional[Request]:
    """A valid request, or None (untrusted bytes: every field checked)."""
    try:
        msg = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    venue, product, ts = msg.get("venue"), msg.get("product"), msg.get("ts")
    reason, detail = msg.get("reason"), msg.get("detail", "")
    if not isinstance(venue, str) or valid_product(product) is None \
            or isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts != ts \
            or reason not in REASONS or not isinstance(detail, str):
        return None
    return venue, product, float(ts), reason, safe_text(detail, MAX_TEXT)


class ControlPublisher:
    """The analytics side: one producer per process, shared by its partitions,
    created on the first request."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.health = Health("control producer", "resync requests wait up to 60 s")
        self._producer: Any = None
        self._lock = threading.Lock()
        self.sent = 0

    def request(self, venue: str, product: str, ts: float, reason: str, detail: str) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = kafka().Producer(producer_config(
                    self.settings, self.health, **{"message.timeout.ms": SEND_TIMEOUT_MS}))
            try:
                self._producer.produce(self.settings.control_topic,
                                       key=f"{venue}:{product}".encode(),
                                       value=encode_request(venue, product, ts, reason, detail))
            except BufferError:
                log.warning("kafka: control requests are not getting out; dropped the one "
                            "for %s:%s", venue, product)
                return
            self._producer.poll(0)
            self.sent += 1

    def close(self, timeout: float = 2.0) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(timeout)


class ControlReader:
    """The capture side: a daemon thread that turns valid requests for ``products``
    into resync requests for the partitions owning them."""

    def __init__(self, settings: KafkaSettings, partitions: int,
                 products: FrozenSet[Tuple[str, str]], resync: ResyncRequests,
                 context: CaptureContext) -> None:
        self.settings = settings
        self.partitions = partitions
        self.products = products
        self.resync = resync
        self.context = context
        self.health = Health("control reader", "resync requests are read once they return")
        self.accepted = 0
        self.ignored = 0
        self.rejected = 0
        self._last: Dict[Tuple[str, str], float] = {}
        self._thread = threading.Thread(target=self._run, name="lobstream-control", daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def handle(self, value: Optional[bytes], now_ms: float) -> bool:
        """Forward one message if it is a request to act on; True if forwarded."""
        request = parse_request(value)
        if request is None:
            self.rejected += 1
            if self.rejected == 1:
                log.warning("kafka: ignored a malformed control message: %s (further ones are "
                            "counted)", safe_text(value, 120))
            return False
        venue, product, ts, reason, detail = request
        key = (venue, product)
        if key not in self.products or ts > now_ms + MAX_AHEAD_MS \
                or ts <= self.context.served(venue, product) \
                or now_ms - self._last.get(key, float("-inf")) < MIN_INTERVAL_MS:
            self.ignored += 1
            return False
        self._last[key] = now_ms
        self.accepted += 1
        log.info("kafka: %s:%s: an analytics flow asked for a fresh snapshot (%s: %s)", venue,
                 product, reason, detail)
        self.resync.request(venue, product, reason, f"asked by analytics: {detail}")
        return True

    def _run(self) -> None:
        ck = kafka()
        consumer = ck.Consumer(client_config(self.settings, self.health, **{
            "group.id": "lobstream-capture-control", "enable.auto.commit": False}))
        topic = self.settings.control_topic
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_END)
                         for p in range(self.partitions)])
        try:
            while not self._stop.is_set() and not shutdown.requested():
                for msg in consumer.consume(100, 0.5):
                    err = msg.error()
                    if err is not None:
                        self.health.error(err)
                        continue
                    self.health.ok()
                    self.handle(msg.value(), time.time() * 1000.0)
        finally:
            consumer.close()

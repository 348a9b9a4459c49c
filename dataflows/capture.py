"""The capture service: the venue connections, published raw to a Kafka topic.

Run it with::

    python -m bytewax.run dataflows.capture:flow

It takes the same configuration as the analytics flow (venues, products,
``record_dir``, the ``[kafka]`` table; ``[run] input`` and the sinks do not apply)
and runs the same planned websocket connections with the same reconnects,
heartbeats, gap checks, resubscriptions and REST snapshots, because its source is
the same :class:`~sources.transport.websocket.WebsocketSource`; only its feeds
(:class:`~sources.kafka.tap.TappedFeed`) hand on capture lines instead of book
events. Shape::

    websocket source (each worker its planned connections)
      --> (stream, capture line) --> KafkaSink: raw topic, key = stream

Keyed by connection stream, one connection's frames stay in order in one
partition (Coinbase numbers frames per connection), and each message's value is
one capture line: the topic is a capture (:mod:`sources.capture.format`),
``event`` lines included. With ``record_dir`` the socket threads also record local
captures, as the analytics flow does (they keep recording while the brokers are
down; they hold no ``event`` lines).

A :class:`~sources.kafka.control.ControlReader` thread reads the control topic and
resyncs the products the analytics ask about; each feed refreshes its products'
snapshots every ``kafka.snapshot_refresh`` seconds.

Delivery of the raw topic: every frame the feeds are handed is published once, in
order per stream (idempotent producer); there are no duplicates. Frames are lost
only (a) to the capture's own bounded inbox when the dataflow falls behind, e.g.
while the brokers are down and the producer holds everything (an ``overflow``
event says so and the books resync), or (b) when the capture dies (the ``open``
event of its next run says so: the analytics see ``disconnected``, then fresh
snapshots). Resume: none; a restarted capture opens new connections and fresh
snapshots.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Callable, List, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows.config import Config
from dataflows.orderbook import lazy_flow, planner, recorders
from sources.capture.format import check_record_dir
from sources.kafka.client import (Health, check_client_config, kafka, producer_config,
                                  wait_for_topics)
from sources.kafka.control import ControlReader
from sources.kafka.tap import CaptureContext, TappedFeed
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.transport.websocket import WebsocketSource


def build_capture(cfg: Config, registry: Optional[Registry] = None) -> Dataflow:
    """The capture dataflow for ``cfg`` (brokers and topics are checked now)."""
    settings = cfg.kafka
    kafka()
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage

    check_client_config(settings)
    partitions = wait_for_topics(settings, [settings.raw_topic, settings.control_topic],
                                 "capture")
    if cfg.record_dir:
        check_record_dir(cfg.record_dir)
    registry = registry or Registry()
    context = CaptureContext(settings.snapshot_refresh * 1000.0)
    resync = ResyncRequests()
    products = frozenset((venue, p) for venue, vc in cfg.venues.items() for p in vc.products)
    control = ControlReader(settings, partitions[settings.control_topic], products, resync,
                            context)
    control.start()
    health = Health("capture producer", "frames wait in the capture's bounded inbox, past "
                    "which connections drop frames and resync")
    flow = Dataflow("lobstream-capture")
    lines = op.input("feeds", flow, WebsocketSource(
        planner(cfg), resync=resync, registry=registry, exit_on_close=cfg.exit_on_close,
        silence_timeout=cfg.silence_timeout,
        recorder=recorders(cfg.record_dir) if cfg.record_dir else None,
        queue_frames=cfg.queue_frames, queue_bytes=cfg.queue_mb * 2**20,
        feed_factory=partial(TappedFeed, context=context)))
    messages = op.map("message", lines,
                      lambda line: KafkaSinkMessage(line[0].encode(), line[1]))
    op.output("raw", messages, _Closing(KafkaSink(settings.brokers, settings.raw_topic,
                                                  add_config=producer_config(settings, health)),
                                        control.stop))
    return flow


class _Closing(DynamicSink[Any]):
    """``sink``, calling ``done`` once every partition it built in this process has
    closed (end of input): the control reader then stops with the capture."""

    def __init__(self, sink: DynamicSink[Any], done: Callable[[], None]) -> None:
        self._sink = sink
        self._done = done
        self._lock = threading.Lock()
        self._open: List[object] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_ClosingPart":
        part = _ClosingPart(self, self._sink.build(step_id, worker_index, worker_count))
        with self._lock:
            self._open.append(part)
        return part

    def closed(self, part: object) -> None:
        with self._lock:
            self._open.remove(part)
            last = not self._open
        if last:
            self._done()


class _ClosingPart(StatelessSinkPartition[Any]):
    def __init__(self, sink: _Closing, inner: StatelessSinkPartition[Any]) -> None:
        self._sink = sink
        self._inner = inner

    def write_batch(self, items: List[Any]) -> None:
        self._inner.write_batch(items)

    def close(self) -> None:
        self._inner.close()
        self._sink.closed(self)


__getattr__ = lazy_flow(__name__, build_capture)

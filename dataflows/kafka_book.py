"""The order-book flow's input and book step when frames come from a Kafka raw topic.

``[run] input = "kafka"`` replaces the websocket source with
:class:`~sources.kafka.source.KafkaFrameSource` (and the :class:`WorkerProbe`
that must precede it) and the book step with :class:`KafkaBookStep`, which
understands what that source sends besides events:

* live items carry the raw topic position of the frame that produced them; every
  record made from it gets ``src: [partition, offset, n]`` (``n`` counts the
  product's records from that frame, from 0). Records are a deterministic function
  of the topic, so a record emitted again after a restart has the same ``src``;
* ``Rebuild`` items (after a restart, from frames whose records were emitted before
  it) are applied to a scratch :class:`~state.product.ProductState` with no bars:
  its book is rebuilt exactly, nothing is counted, no record is emitted, and the
  first live item adopts the rebuilt book. A book the rebuild finds crossed is
  asked for again (the capture ignores the request if it has resynced the product
  since);
* ``Lost`` items (a synced book that cannot be rebuilt) emit the ``invalid`` status
  the consumers need, with ``src`` null: it is new, never a repeat.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from bytewax.dataflow import Dataflow, Stream
import bytewax.operators as op
from bytewax.operators import StatefulLogic

from dataflows.config import Config
from dataflows.orderbook import BookStep, ProductLogic, Record, clock_ms
from sources.kafka.client import check_client_config, wait_for_topics
from sources.kafka.control import ControlPublisher
from sources.kafka.source import KafkaFrameSource, Lost, Rebuild, WorkerProbe
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from state.product import ProductState

_RESYNC_KINDS = ("crossed", "locked")


def kafka_input(flow: Dataflow, cfg: Config, registry: Registry,
                resync: ResyncRequests) -> Stream[Any]:
    """The flow's input from the raw topic (its brokers and topics checked now)."""
    settings = cfg.kafka
    check_client_config(settings)
    wait_for_topics(settings, [settings.raw_topic, settings.control_topic], "analytics")
    probe = WorkerProbe()
    op.input("kafka_workers", flow, probe)  # first: see sources.kafka.source
    return op.input("kafka", flow, KafkaFrameSource(
        settings, probe, resync=resync, registry=registry,
        publisher=ControlPublisher(settings), clock_ms=clock_ms(cfg)))


class KafkaBookStep(BookStep):
    """The book step for Kafka input; builds a :class:`KafkaProductLogic` per key."""

    def __call__(self, resume: Optional[bytes]) -> "KafkaProductLogic":
        state = ProductState.restore(resume, self.bars) if resume is not None \
            else ProductState(self.bars)
        return KafkaProductLogic(self, state)


class KafkaProductLogic(ProductLogic):
    """:class:`ProductLogic` plus rebuilds, lost books and ``src``; see the module
    docstring. Its snapshot is the product state's, like any book step's."""

    __slots__ = ("_scratch", "_src", "_n")

    def __init__(self, step: BookStep, state: ProductState) -> None:
        super().__init__(step, state)
        self._scratch: Optional[ProductState] = None
        self._src: Optional[Tuple[int, int]] = None
        self._n = 0

    def on_item(self, item: Any) -> Tuple[List[Record], bool]:
        kind = type(item)
        if kind is tuple:
            partition, offset, event = item
            if self._scratch is not None:
                self._state.adopt_book(self._scratch)
                self._scratch = None
            records, keep = super().on_item(event)
            if self._src != (partition, offset):
                self._src, self._n = (partition, offset), 0
            n = self._n
            for rec in records:
                rec["src"] = [partition, offset, n]
                n += 1
            self._n = n
            return records, keep
        if kind is Rebuild:
            self._rebuild(item.item)
            return [], StatefulLogic.RETAIN
        if kind is Lost:
            return self._lost(item.status), StatefulLogic.RETAIN
        return super().on_item(item)

    def _rebuild(self, event: Any) -> None:
        step = self._step
        if self._name is None:
            self._name = (event.venue, event.product)
            step.books[self._name] = self._state
        if self._scratch is None:
            self._scratch = ProductState(None)
        for rec in self._scratch.on_item(event, step.depth, step.alert_bps):
            if rec["type"] == "alert" and rec["kind"] in _RESYNC_KINDS:
                step.resync.request(event.venue, event.product, rec["kind"], rec["detail"])

    def _lost(self, status: Any) -> List[Record]:
        if self._scratch is not None:
            self._state.adopt_book(self._scratch)
            self._scratch = None
        if self._state.valid:
            return []  # rebuilt from another stream of the product
        # The book was valid when the flow stopped: report its loss as any loss of a
        # valid book is reported (the restored state cannot know it was valid).
        self._state.valid = True
        records, _ = super().on_item(status)
        for rec in records:
            rec["src"] = None
        return records

    def on_eof(self) -> Tuple[List[Record], bool]:
        records, keep = super().on_eof()
        for rec in records:
            rec["src"] = None
        return records, keep

"""Counters for operators: a Prometheus collector and a periodic one-line status log.

The counters already exist as plain ``Counter`` dicts on each connection's
:class:`~sources.feed.feed.Feed` and each product's :class:`~state.product.ProductState`,
collected in the flow's :class:`~sources.runtime.registry.Registry`. They are read
only when scraped or logged, so the hot path pays nothing for metrics.

Two ways to serve them:

* Bytewax's own API (``BYTEWAX_DATAFLOW_API_ENABLED=1``, port
  ``BYTEWAX_DATAFLOW_API_PORT``, default 3030) serves them next to its own on
  ``/metrics``. **It binds 0.0.0.0** and Bytewax 0.21.1 has no setting for the
  address: anyone who can reach the host can read it.
* lobstream's own endpoint (``metrics_addr``, e.g. ``127.0.0.1:9464``) serves the
  same registry on the address given, loopback by default in the examples.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Iterator, List, Tuple

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dataflows.config import parse_addr
from sources.runtime.registry import Registry

log = logging.getLogger("lobstream.status")


def _split(stream: str) -> Tuple[str, str]:
    venue, _, rest = stream.partition(":")
    return venue, rest


class LobstreamCollector(Collector):
    """Exports feed and book counters, labelled by venue and product."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[object]:
        feed = CounterMetricFamily(
            "lobstream_feed_events", "Per-connection input events: frames, updates, "
            "snapshots, gaps, resyncs, connects, duplicates, bad_<kind>, errors...",
            labels=["venue", "stream", "event"])
        for f in self.registry.feeds:
            venue, stream = _split(f.stream)
            for event, n in list(f.counts.items()):
                feed.add_metric([venue, stream, event], n)
        yield feed
        book = CounterMetricFamily(
            "lobstream_book_events", "Per-product book step events: updates applied, "
            "level changes, snapshots, invalidations by reason, dropped while invalid",
            labels=["venue", "product", "event"])
        valid = GaugeMetricFamily("lobstream_book_valid",
                                  "1 while the product's book is synced and trusted",
                                  labels=["venue", "product"])
        levels = GaugeMetricFamily("lobstream_book_levels", "Price levels held",
                                   labels=["venue", "product"])
        for (venue, product), state in list(self.registry.books.items()):
            for event, n in list(state.counts.items()):
                book.add_metric([venue, product, event], n)
            valid.add_metric([venue, product], 1.0 if state.valid else 0.0)
            levels.add_metric([venue, product], float(len(state.book)))
        yield book
        yield valid
        yield levels
        queued = GaugeMetricFamily("lobstream_queue_bytes",
                                   "Bytes of frames waiting for the dataflow, per worker")
        dropped = CounterMetricFamily("lobstream_queue_dropped",
                                      "Frames dropped because the dataflow fell behind")
        queued.add_metric([], float(sum(i.bytes for i in self.registry.inboxes)))
        dropped.add_metric([], float(sum(i.dropped_total for i in self.registry.inboxes)))
        yield queued
        yield dropped


def register_collector(registry: Registry) -> LobstreamCollector:
    """Add the collector to the default registry, the one Bytewax's endpoint serves."""
    collector = LobstreamCollector(registry)
    REGISTRY.register(collector)
    return collector


def serve_metrics(addr: str) -> None:
    """Serve the default registry (lobstream's and the process's metrics) on ``addr``."""
    host, port = parse_addr(addr)
    start_http_server(port, addr=host, registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", host, port)


def status_line(registry: Registry) -> str:
    """Totals over all connections and books, and which books are down."""
    feeds_list = registry.feeds
    feeds: Counter = Counter()
    for f in feeds_list:
        feeds.update(dict(f.counts))
    books = registry.books
    down = sorted(f"{v}:{p}" for (v, p), s in list(books.items()) if not s.valid)
    bad = sum(n for k, n in feeds.items() if k.startswith("bad_"))
    reconnects = max(0, feeds["connects"] - len(feeds_list))
    dropped = sum(i.dropped_total for i in registry.inboxes)
    parts: List[str] = [
        f"books {len(books) - len(down)}/{len(books)} synced",
        f"frames {feeds['frames']}", f"updates {feeds['updates']}",
        f"snapshots {feeds['snapshots']}", f"gaps {feeds['gaps']}",
        f"resyncs {feeds['resyncs']}", f"reconnects {reconnects}",
        f"duplicates {feeds['duplicates']}", f"bad {bad}", f"errors {feeds['errors']}",
    ]
    if dropped:
        parts.append(f"dropped (fell behind) {dropped}")
    if down:
        parts.append("down: " + ", ".join(down[:10]) + (" ..." if len(down) > 10 else ""))
    return "; ".join(parts)


def start_status_log(registry: Registry, interval: float) -> threading.Thread:
    """Log :func:`status_line` every ``interval`` seconds from a daemon thread."""

    def loop() -> None:
        while True:
            time.sleep(interval)
            log.info("%s", status_line(registry))

    thread = threading.Thread(target=loop, name="lobstream-status", daemon=True)
    thread.start()
    return thread

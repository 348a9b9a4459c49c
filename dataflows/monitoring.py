"""Counters for operators: a Prometheus collector and a periodic one-line status log.

The counters already exist as plain ``Counter`` dicts on each connection's
:class:`~sources.feed.feed.Feed` and each product's :class:`~state.product.ProductState`.
They are read only when scraped or logged, so the hot path pays nothing for
metrics. Bytewax serves them, next to its own, on ``/metrics`` when run with
``BYTEWAX_DATAFLOW_API_ENABLED=1`` (port ``BYTEWAX_DATAFLOW_API_PORT``, default 3030).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Dict, Iterator, List, Tuple

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sources.feed.feed import FEEDS
from state.product import ProductState

log = logging.getLogger("lobstream.status")

#: Live book states by ``(venue, product)``, filled by the book step.
Books = Dict[Tuple[str, str], ProductState]


def _split(stream: str) -> Tuple[str, str]:
    venue, _, rest = stream.partition(":")
    return venue, rest


class LobstreamCollector(Collector):
    """Exports feed and book counters, labelled by venue and product."""

    def __init__(self, books: Books) -> None:
        self.books = books

    def collect(self) -> Iterator[object]:
        feed = CounterMetricFamily(
            "lobstream_feed_events", "Per-connection input events: frames, updates, "
            "snapshots, gaps, resyncs, connects, duplicates, bad_<kind>, errors...",
            labels=["venue", "stream", "event"])
        for f in list(FEEDS):
            venue, stream = _split(f.stream)
            for event, n in f.counts.items():
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
        for (venue, product), state in list(self.books.items()):
            for event, n in state.counts.items():
                book.add_metric([venue, product, event], n)
            valid.add_metric([venue, product], 1.0 if state.valid else 0.0)
            levels.add_metric([venue, product], float(len(state.book)))
        yield book
        yield valid
        yield levels


def register_collector(books: Books) -> LobstreamCollector:
    """Add the collector to the default registry, the one Bytewax's endpoint serves."""
    collector = LobstreamCollector(books)
    REGISTRY.register(collector)
    return collector


def status_line(books: Books) -> str:
    """Totals over all connections and books, and which books are down."""
    feeds: Counter = Counter()
    for f in list(FEEDS):
        feeds.update(f.counts)
    down = sorted(f"{v}:{p}" for (v, p), s in list(books.items()) if not s.valid)
    bad = sum(n for k, n in feeds.items() if k.startswith("bad_"))
    reconnects = max(0, feeds["connects"] - len(FEEDS))
    parts: List[str] = [
        f"books {len(books) - len(down)}/{len(books)} synced",
        f"frames {feeds['frames']}", f"updates {feeds['updates']}",
        f"snapshots {feeds['snapshots']}", f"gaps {feeds['gaps']}",
        f"resyncs {feeds['resyncs']}", f"reconnects {reconnects}",
        f"duplicates {feeds['duplicates']}", f"bad {bad}", f"errors {feeds['errors']}",
    ]
    if down:
        parts.append("down: " + ", ".join(down[:10]) + (" ..." if len(down) > 10 else ""))
    return "; ".join(parts)


def start_status_log(books: Books, interval: float) -> threading.Thread:
    """Log :func:`status_line` every ``interval`` seconds from a daemon thread."""

    def loop() -> None:
        while True:
            time.sleep(interval)
            log.info("%s", status_line(books))

    thread = threading.Thread(target=loop, name="lobstream-status", daemon=True)
    thread.start()
    return thread

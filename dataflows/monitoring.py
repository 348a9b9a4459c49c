"""Counters for operators: a Prometheus collector and a periodic one-line status log.

The counters already exist as plain ``Counter`` dicts on each connection's
:class:`~sources.feed.feed.Feed` and each product's :class:`~state.product.ProductState`,
collected in the flow's :class:`~sources.runtime.registry.Registry`. They are read
only when scraped or logged, so the hot path pays nothing for metrics; the
per-product view (state, best prices, time since the last update, latest bar)
comes from :mod:`dataflows.watch`.

Two ways to serve them:

* Bytewax's own API (``BYTEWAX_DATAFLOW_API_ENABLED=1``, port
  ``BYTEWAX_DATAFLOW_API_PORT``, default 3030) serves them next to its own on
  ``/metrics``. **It binds 0.0.0.0** and Bytewax 0.21.1 has no setting for the
  address: anyone who can reach the host can read it.
* lobstream's own endpoint (``metrics_addr``, e.g. ``127.0.0.1:9464``) serves the
  same registry on the address given, loopback by default in the examples.
  Process ``i`` of a cluster serves on port ``PORT + i``, so one configuration
  file serves every process and ``lobstream top`` finds them all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Iterator, List, Optional, Tuple

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dataflows.config import parse_addr
from dataflows.watch import STATES, Activity, ProductView, products
from sources.runtime.registry import Registry

log = logging.getLogger("lobstream.status")

#: Products listed by name in the status line's "last update" part.
SHOWN_AGES = 6


def _split(stream: str) -> Tuple[str, str]:
    venue, _, rest = stream.partition(":")
    return venue, rest


def _gauge(name: str, help_text: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=["venue", "product"])


class LobstreamCollector(Collector):
    """Exports feed and book counters, labelled by venue and product, and the
    per-product gauges ``lobstream top`` shows."""

    def __init__(self, registry: Registry, activity: Optional[Activity] = None) -> None:
        self.registry = registry
        self.activity = activity or Activity(registry)

    def collect(self) -> Iterator[object]:
        feed = CounterMetricFamily(
            "lobstream_feed_events", "Per-connection input events: frames, updates, "
            "snapshots, gaps, resyncs, connects, disconnects, duplicates, bad_<kind>, errors...",
            labels=["venue", "stream", "event"])
        up = GaugeMetricFamily("lobstream_connection_up",
                               "1 while the connection is open, 0 while it is down or failing",
                               labels=["venue", "stream"])
        for f in self.registry.feeds:
            venue, stream = _split(f.stream)
            for event, n in list(f.counts.items()):
                feed.add_metric([venue, stream, event], n)
            up.add_metric([venue, stream], 0.0 if f.outage is not None else 1.0)
        yield feed
        yield up
        book = CounterMetricFamily(
            "lobstream_book_events", "Per-product book step events: updates applied, "
            "level changes, snapshots, invalidations by reason, dropped while invalid, bars",
            labels=["venue", "product", "event"])
        valid = _gauge("lobstream_book_valid", "1 while the product's book is synced and trusted")
        levels = _gauge("lobstream_book_levels", "Price levels held")
        for (venue, product), state in list(self.registry.books.items()):
            for event, n in list(state.counts.items()):
                book.add_metric([venue, product, event], n)
            valid.add_metric([venue, product], 1.0 if state.valid else 0.0)
            levels.add_metric([venue, product], float(len(state.book)))
        yield book
        yield valid
        yield levels
        yield from self._products(products(self.registry, self.activity))
        queued = GaugeMetricFamily("lobstream_queue_bytes",
                                   "Bytes of frames waiting for the dataflow, per worker")
        dropped = CounterMetricFamily("lobstream_queue_dropped",
                                      "Frames dropped because the dataflow fell behind")
        queued.add_metric([], float(sum(i.bytes for i in self.registry.inboxes)))
        dropped.add_metric([], float(sum(i.dropped_total for i in self.registry.inboxes)))
        yield queued
        yield dropped

    def _products(self, views: List[ProductView]) -> Iterator[object]:
        """The per-product gauges: a gauge is left out while its value is unknown
        (no synced book, no bar yet), so a reader never sees a stale price."""
        state = GaugeMetricFamily("lobstream_product_state",
                                  f"1 for the product's current state ({', '.join(STATES)})",
                                  labels=["venue", "product", "state"])
        gauges = {
            "bid": _gauge("lobstream_book_bid_price", "Best bid, quote currency"),
            "bid_size": _gauge("lobstream_book_bid_size", "Size at the best bid, venue units"),
            "ask": _gauge("lobstream_book_ask_price", "Best ask, quote currency"),
            "ask_size": _gauge("lobstream_book_ask_size", "Size at the best ask, venue units"),
            "spread_bps": _gauge("lobstream_book_spread_bps", "Spread, basis points of mid"),
            "imbalance": _gauge("lobstream_book_imbalance",
                                "Top-of-book size imbalance, -1 (all ask) to 1 (all bid)"),
            "age": _gauge("lobstream_book_last_update_age_seconds",
                          "Seconds since the product's last book update"),
        }
        resumed = _gauge("lobstream_product_resumed",
                         "1 if the product's state was restored from recovery at start")
        bar = {
            "close": _gauge("lobstream_bar_close", "Close of the latest bar"),
            "volume": _gauge("lobstream_bar_volume", "Volume of the latest bar, base currency"),
            "trades": _gauge("lobstream_bar_trades", "Trades in the latest bar"),
            "end": _gauge("lobstream_bar_end_seconds", "End of the latest bar, epoch seconds"),
            "interval_s": _gauge("lobstream_bar_interval_seconds", "Interval of the latest bar"),
        }
        for v in views:
            labels = [v.venue, v.product]
            state.add_metric(labels + [v.state], 1.0)
            values = {"bid": v.bid, "bid_size": v.bid_size, "ask": v.ask,
                      "ask_size": v.ask_size, "spread_bps": v.spread_bps,
                      "imbalance": v.imbalance, "age": v.age}
            for key, family in gauges.items():
                if values[key] is not None:
                    family.add_metric(labels, float(values[key]))  # type: ignore[arg-type]
            resumed.add_metric(labels, 1.0 if v.resumed else 0.0)
            if v.last_bar is not None:
                for key, family in bar.items():
                    value = v.last_bar.get(key)
                    if value is not None:
                        family.add_metric(labels, float(value) / (1000.0 if key == "end" else 1.0))
        yield state
        yield from gauges.values()
        yield resumed
        yield from bar.values()


def register_collector(registry: Registry, activity: Optional[Activity] = None
                       ) -> LobstreamCollector:
    """Add the collector to the default registry, the one Bytewax's endpoint serves."""
    collector = LobstreamCollector(registry, activity)
    REGISTRY.register(collector)
    return collector


def metrics_port(addr: str, process: int) -> Tuple[str, int]:
    """Where process ``process`` of a cluster serves ``metrics_addr``: port + process."""
    host, port = parse_addr(addr)
    return host, port + process


def serve_metrics(addr: str, process: int = 0) -> str:
    """Serve the default registry (lobstream's and the process's metrics) on ``addr``
    (its port plus ``process``); returns the URL."""
    host, port = metrics_port(addr, process)
    start_http_server(port, addr=host, registry=REGISTRY)
    url = f"http://{host}:{port}/metrics"
    log.info("metrics on %s", url)
    return url


def _ago(seconds: Optional[float]) -> str:
    return "never" if seconds is None else f"{seconds:.0f} s"


def status_line(registry: Registry, activity: Optional[Activity] = None) -> str:
    """Totals since start over every connection and book, the products not synced,
    the connections failing, and how long ago each product last updated."""
    feeds_list = registry.feeds
    feeds: Counter = Counter()
    for f in feeds_list:
        feeds.update(dict(f.counts))
    views = products(registry, activity)
    synced = sum(1 for v in views if v.state == "synced")
    down = [f"{v.name} ({v.state})" for v in views if v.state != "synced"]
    failing = [f for f in feeds_list if f.outage is not None]
    bad = sum(n for k, n in feeds.items() if k.startswith("bad_"))
    reconnects = max(0, feeds["connects"] - sum(1 for f in feeds_list if f.counts["connects"]))
    dropped = sum(i.dropped_total for i in registry.inboxes)
    parts: List[str] = [
        f"books {synced}/{len(views)} synced",
        f"connections {len(feeds_list) - len(failing)}/{len(feeds_list)} up",
        f"frames {feeds['frames']}", f"updates {feeds['updates']}",
        f"snapshots {feeds['snapshots']}", f"gaps {feeds['gaps']}",
        f"resyncs {feeds['resyncs']}", f"reconnects {reconnects}",
        f"disconnects {feeds['disconnects']}",
        f"duplicates {feeds['duplicates']}", f"bad {bad}", f"errors {feeds['errors']}",
    ]
    if dropped:
        parts.append(f"dropped (fell behind) {dropped}")
    if failing:
        parts.append("failing: " + ", ".join(
            f"{f.stream} ({f.outage}; {f.failures} in a row)" for f in failing[:3])
            + (f" +{len(failing) - 3} more" if len(failing) > 3 else ""))
    if down:
        parts.append("not synced: " + ", ".join(down[:10])
                     + (f" +{len(down) - 10} more" if len(down) > 10 else ""))
    if activity is not None and views:
        # never updated first, then the longest quiet
        stalest = sorted(views, key=lambda v: (v.age is not None, -(v.age or 0.0)))
        shown = ", ".join(f"{v.name} {_ago(v.age)}" for v in stalest[:SHOWN_AGES])
        more = len(stalest) - SHOWN_AGES
        parts.append(f"last update: {shown}" + (f" +{more} more" if more > 0 else ""))
    if registry.resumed:
        parts.append(f"resumed from recovery ({len(registry.resumed)} products)")
    return "; ".join(parts)


def start_status_log(registry: Registry, interval: float, activity: Activity
                     ) -> threading.Thread:
    """Log :func:`status_line` every ``interval`` seconds from a daemon thread,
    sampling product activity every second in between, and say once when the
    run resumed from recovery."""

    def loop() -> None:
        due = time.monotonic() + interval
        told = False
        while True:
            time.sleep(1.0)
            activity.sample()
            if registry.resumed and not told:
                told = True
                log.info("resumed from recovery: counters, trade ids and open bars of %d "
                         "products restored; every book waits for a fresh exchange snapshot",
                         len(registry.resumed))
            if time.monotonic() >= due:
                due += interval
                log.info("%s", status_line(registry, activity))

    thread = threading.Thread(target=loop, name="lobstream-status", daemon=True)
    thread.start()
    return thread

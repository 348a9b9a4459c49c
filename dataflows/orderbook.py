"""The lobstream dataflow: exchange feeds -> exact books -> summaries -> sinks.

Run it with::

    python -m bytewax.run dataflows.orderbook:flow

Configuration comes from ``LOBSTREAM_CONFIG`` (a TOML file) and ``LOBSTREAM_*``
environment variables (see :mod:`dataflows.config`); a bad value stops the run at
start with one line naming it.

Shape of the flow::

    input per venue (one partition per product) --merge--> book (stateful_flat_map,
    keyed by "venue:product") --+--> summaries + statuses --> configured sinks
                                +--> alerts + statuses -----> console (stdout)
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from dataflows.config import Config, ConfigError, load_config
from sinks import SINKS
from sinks.console import ConsoleSink
from dataflows.monitoring import Books, register_collector, start_status_log
from sources.runtime import control, shutdown
from sources.feed.feed import Item
from sources.transport.replay import ReplaySource
from sources.venues import get_venue
from sources.transport.websocket import WebsocketSource
from state.events import book_key
from state.product import ProductState

Record = Dict[str, Any]


class BookStep:
    """The ``stateful_flat_map`` mapper: one :class:`ProductState` per key.

    The state's per-epoch snapshot leaves the book out (see :mod:`state.product`),
    so Bytewax's deep copy of it costs microseconds however deep the book is.
    """

    def __init__(self, depth: int, alert_bps: float) -> None:
        self.depth = depth
        self.alert_bps = alert_bps
        #: Every product's current state, for the metrics exporter and status log.
        self.books: Books = {}

    def __call__(self, state: Optional[ProductState],
                 item: Item) -> Tuple[ProductState, List[Record]]:
        if state is None or state.restored:
            # New, or resumed from a recovery snapshot (which Bytewax hands to the
            # mapper as a different object than the one it snapshotted).
            state = state or ProductState()
            self.books[(item.venue, item.product)] = state
        records = state.on_item(item, self.depth, self.alert_bps)
        if state.resync is not None:
            control.request_resync(book_key(item.venue, item.product), *state.resync)
            state.resync = None
        return state, records


def _inputs(flow: Dataflow, cfg: Config) -> List[op.Stream[Tuple[str, Item]]]:
    if cfg.replay:
        return [op.input("replay", flow, ReplaySource(cfg.replay, speed=cfg.replay_speed))]
    streams = []
    for name, venue_cfg in cfg.venues.items():
        venue = get_venue(name, deribit_interval=venue_cfg.interval or "100ms",
                          coinbase_exchange_channel=venue_cfg.channel or "level2_batch")
        source = WebsocketSource(venue, venue_cfg.products, venue_cfg.url,
                                 exit_on_close=cfg.exit_on_close, record_dir=cfg.record_dir,
                                 silence_timeout=cfg.silence_timeout)
        streams.append(op.input(f"{name}_in", flow, source))
    return streams


def build_flow(cfg: Config, step: Optional[BookStep] = None) -> Dataflow:
    """The dataflow for ``cfg``; ``step`` lets the caller keep the book step (and so
    the live book states) for monitoring."""
    flow = Dataflow("lobstream")
    inputs = _inputs(flow, cfg)
    events = inputs[0] if len(inputs) == 1 else op.merge("events", *inputs)
    step = step or BookStep(cfg.depth, cfg.alert_bps)
    records = op.stateful_flat_map("book", events, step)
    data = op.filter("data", records, lambda kv: kv[1]["type"] != "alert")
    console = op.filter("console", records, lambda kv: kv[1]["type"] != "summary")
    op.output("console_out", console, ConsoleSink())
    options = {"jsonl_dir": cfg.jsonl_dir}
    for name in cfg.sinks:
        op.output(f"{name}_out", data, SINKS[name](options))
    return flow


def _flow_from_environment() -> Dataflow:
    """The flow ``python -m bytewax.run`` runs: configured from the environment,
    with clean shutdown on signals, metrics and the periodic status line."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config()
        step = BookStep(cfg.depth, cfg.alert_bps)
        dataflow = build_flow(cfg, step)
    except (ConfigError, ValueError, FileNotFoundError) as ex:
        raise SystemExit(f"lobstream: configuration error: {ex}") from None
    shutdown.install_signal_handlers()
    register_collector(step.books)
    if cfg.status_interval > 0:
        start_status_log(step.books, cfg.status_interval)
    return dataflow


_flow: Optional[Dataflow] = None


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access (PEP 562), when ``bytewax.run`` looks it up,
    so importing this module for :func:`build_flow` has no side effects: no
    configuration read, no signal handlers, no status thread."""
    global _flow
    if name != "flow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _flow is None:
        _flow = _flow_from_environment()
    return _flow

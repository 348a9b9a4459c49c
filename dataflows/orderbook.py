"""The lobstream dataflow: exchange feeds -> exact books -> summaries -> sinks.

Run it with::

    python -m bytewax.run dataflows.orderbook:flow

Configuration comes from ``LOBSTREAM_CONFIG`` (a TOML file) and ``LOBSTREAM_*``
environment variables (see :mod:`dataflows.config`); a bad value stops the run at
start with one line naming it.

Shape of the flow::

    input (each worker opens its own connections, many products on each)
      --> book (stateful_flat_map, keyed so each product's book sits on the
          worker that owns its socket)
      --+--> summaries + statuses --> configured sinks (on the same worker)
        +--> alerts + statuses -----> console (stdout)

The input is the venues' websockets, a replay of captures, or (``[run] input =
"kafka"``) the raw topic a capture publishes (:mod:`dataflows.capture`,
:mod:`dataflows.kafka_book`).

Nothing crosses a process: placement (:mod:`sources.runtime.placement`) routes
every product's key to the worker that reads its connection, and the sinks are
dynamic sinks that write where the record is.
"""

from __future__ import annotations

import atexit
import os
import resource
import sys
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

import bytewax.operators as op
from bytewax.operators import StatefulLogic
from bytewax.dataflow import Dataflow

from dataflows.config import Config, ConfigError
from dataflows.launch import from_bytewax_argv
from sinks import SINKS
from sinks.console import ConsoleSink
from sources.capture.format import Recorder
from sources.instruments.universe import VenueUniverse, resolve_at_start
from sources.runtime import shutdown
from sources.runtime.placement import ConnectionPlan, VenueRun, plan_connections
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.transport.replay import ReplaySource
from sources.transport.websocket import WebsocketSource
from sources.venues import VENUES
from sources.venues.credentials import CREDENTIALS
from state.product import BarSpec, Item, ProductState

Record = Dict[str, Any]

#: Open files a worker keeps for everything but its sockets (sinks, captures, logs).
FILE_RESERVE = 128


class BookStep:
    """What the book step of every product shares: its settings, the resync
    requests to its sources, and the registry its states are listed in. It builds
    one :class:`ProductLogic` per key (Bytewax calls it with the key's resume
    state)."""

    def __init__(self, depth: int, alert_bps: float, resync: ResyncRequests,
                 registry: Registry, bars: Optional[BarSpec] = None) -> None:
        self.depth = depth
        self.alert_bps = alert_bps
        self.resync = resync
        self.books = registry.books
        self.resumed = registry.resumed
        self.last_bars = registry.last_bars
        self.bars = bars

    def __call__(self, resume: Optional[bytes]) -> "ProductLogic":
        state = ProductState.restore(resume, self.bars) if resume is not None \
            else ProductState(self.bars)
        return ProductLogic(self, state, resume is not None)


class ProductLogic(StatefulLogic[Item, Record, bytes]):
    """One product's :class:`ProductState` as a Bytewax stateful logic.

    A lower-level operator than ``stateful_flat_map`` for two reasons: end of input
    must emit the open bars (``on_eof``), and the per-epoch snapshot is the state's
    own compact pickle (no deep copy; the book is never in it). A book found
    crossed or locked is reported to the product's source through the step's
    resync requests, which sit on the same worker. Closed bars are counted here,
    where every record passes anyway (the end-of-run table shows them).

    A key's first item may be a :class:`~sources.runtime.shutdown.StopRequest`
    from another process (Ctrl-C there): it stops this process's inputs too.
    """

    __slots__ = ("_step", "_state", "_name", "_resumed")

    def __init__(self, step: BookStep, state: ProductState, resumed: bool = False) -> None:
        self._step = step
        self._state = state
        self._name: Optional[Tuple[str, str]] = None
        self._resumed = resumed

    def on_item(self, item: Item) -> Tuple[List[Record], bool]:
        step = self._step
        if self._name is None:
            if type(item) is shutdown.StopRequest:
                shutdown.told(item)  # type: ignore[arg-type]
                return [], StatefulLogic.DISCARD
            self._name = (item.venue, item.product)
            step.books[self._name] = self._state
            if self._resumed:
                step.resumed.add(self._name)
        records = self._state.on_item(item, step.depth, step.alert_bps)
        for rec in records:
            kind = rec["type"]
            if kind == "alert" and rec["kind"] in ("crossed", "locked"):
                step.resync.request(item.venue, item.product, rec["kind"], rec["detail"])
            elif kind == "bar":
                self._bar(rec)
        return records, StatefulLogic.RETAIN

    def _bar(self, rec: Record) -> None:
        self._state.counts["bars" if rec["revision"] == 0 else "bar_revisions"] += 1
        last = self._step.last_bars.get(self._name)  # type: ignore[arg-type]
        if last is None or rec["interval_s"] < last["interval_s"] or \
                (rec["interval_s"] == last["interval_s"] and rec["end"] >= last["end"]):
            self._step.last_bars[self._name] = rec  # type: ignore[index]

    def on_eof(self) -> Tuple[List[Record], bool]:
        if self._name is None:
            return [], StatefulLogic.RETAIN
        records = self._state.finish(*self._name)
        for rec in records:
            self._bar(rec)
        return records, StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return self._state.snapshot()


#: Record types every data sink receives; the console shows alerts and statuses
#: (and closed bars, when asked).
DATA_TYPES = frozenset(("summary", "status", "trade", "ticker", "bar"))


def venue_runs(cfg: Config) -> List[VenueRun]:
    """What to follow on each configured venue; a venue's credentials ride in its
    connections' settings, where only its protocol reads them."""
    return [VenueRun(VENUES[name], {**vc.settings, CREDENTIALS: vc.credentials}
                     if vc.credentials else vc.settings, vc.url, tuple(vc.products),
                     vc.products_per_connection or VENUES[name].limits.products_per_connection,
                     vc.rest_url)
            for name, vc in cfg.venues.items()]


def planner(cfg: Config) -> Callable[[int], List[ConnectionPlan]]:
    """The connection plan for a worker count, within the open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = None if soft == resource.RLIM_INFINITY else max(1, soft - FILE_RESERVE)
    runs = venue_runs(cfg)

    def plan(workers: int) -> List[ConnectionPlan]:
        return plan_connections(runs, workers, budget)

    return plan


def recorders(directory: str) -> Callable[[str, str, str], Recorder]:
    """Makes each connection's recorder: new files per run and rotation, gzip,
    flushed every second, paused (not fatal) on write errors."""

    def make(venue: str, stream: str, url: str) -> Recorder:
        return Recorder(directory, venue, stream, source=f"lobstream recorder {url}")

    return make


def clock_ms(cfg: Config) -> float:
    """How often each connection tells its products the exchange time it reached:
    every second (or each shortest bar, if shorter), only when bars are built."""
    return float(min((1000,) + cfg.bar_intervals)) if cfg.bar_intervals else 0.0


def resolve_universes(cfg: Config) -> List[VenueUniverse]:
    """Check each live venue's names (and select by its rules) against its
    instrument list, fetched once at start; ``cfg``'s product lists become the
    resolved ones. Raises ConfigError with one line."""
    universes = []
    for name, vc in cfg.venues.items():
        u = VenueUniverse(name, tuple(vc.products), vc.rules, vc.rest_url or VENUES[name].rest_url,
                          vc.refresh, vc.instruments)
        try:
            chosen = resolve_at_start(u)
        except ValueError as ex:
            raise ConfigError(str(ex)) from None
        if chosen:
            vc.products = [i.symbol for i in chosen]
        universes.append(u)
    return universes


def records_of(types: FrozenSet[str]) -> Callable[[List[Tuple[str, Record]]],
                                                 List[Tuple[str, Record]]]:
    """A batch filter keeping the keyed records of ``types``, in order.

    One call per batch instead of ``op.filter``'s three Python calls per record
    (its shim, the predicate, the generator feeding them): measured with
    callgrind over the Coinbase recording, 212,700 -> 209,600 instructions per
    frame of the whole flow for the two filters."""
    def keep(batch: List[Tuple[str, Record]]) -> List[Tuple[str, Record]]:
        return [kv for kv in batch if kv[1]["type"] in types]
    return keep


def build_flow(cfg: Config, registry: Optional[Registry] = None,
               resync: Optional[ResyncRequests] = None) -> Dataflow:
    """The dataflow for ``cfg``. ``registry`` collects the live feeds and book
    states for monitoring; ``resync`` carries the book step's resync requests to
    the sources (fresh ones if not given)."""
    registry = registry or Registry()
    resync = resync or ResyncRequests()
    flow = Dataflow("lobstream")
    step_type = BookStep
    if cfg.replay:
        source = ReplaySource(cfg.replay, speed=cfg.replay_speed, resync=resync,
                              registry=registry, clock_ms=clock_ms(cfg))
        source.check()
        registry.streams = source.streams()
        events = op.input("replay", flow, source)
    elif cfg.input == "kafka":
        from dataflows import kafka_book  # imported only when used: the kafka extra

        events = kafka_book.kafka_input(flow, cfg, registry, resync)
        step_type = kafka_book.KafkaBookStep
    else:
        universes = resolve_universes(cfg)
        events = op.input("feeds", flow, WebsocketSource(
            planner(cfg), resync=resync, registry=registry, exit_on_close=cfg.exit_on_close,
            silence_timeout=cfg.silence_timeout,
            recorder=recorders(cfg.record_dir) if cfg.record_dir else None,
            queue_frames=cfg.queue_frames, queue_bytes=cfg.queue_mb * 2**20,
            clock_ms=clock_ms(cfg), universes=universes))
    bars = BarSpec(cfg.bar_intervals, cfg.bar_lateness * 1000.0, cfg.bar_keep * 1000.0,
                   cfg.bar_empty) if cfg.bar_intervals else None
    step = step_type(cfg.depth, cfg.alert_bps, resync, registry, bars)
    records = op.stateful("book", events, step)
    data = op.flat_map_batch("data", records, records_of(DATA_TYPES))
    shown = frozenset(("alert", "status") + (("bar",) if cfg.bar_console else ()))
    console = op.flat_map_batch("console", records, records_of(shown))
    op.output("console_out", console, ConsoleSink(json_stdout="stdout" in cfg.sinks))
    options = {"jsonl_dir": cfg.jsonl_dir, "jsonl_mode": cfg.jsonl_mode,
               "jsonl_max_open": cfg.jsonl_max_open, "store": cfg.store, "sql": cfg.sql,
               "kafka": cfg.kafka}
    for name in cfg.sinks:
        op.output(f"{name}_out", data, SINKS[name](options))
    return flow


def flow_from_environment(build: Callable[[Config, Registry], Dataflow]) -> Dataflow:
    """The flow ``python -m bytewax.run`` runs: ``build`` configured from the
    environment, with the scaling and recovery flags read from Bytewax's own command
    line, the start banner, clean shutdown on signals, metrics and the status line;
    the end-of-run table is printed when the interpreter exits (``lobstream run``
    prints it itself, and also sets the exit code)."""
    from dataflows.session import prepare  # (the session builds on this module)

    session = prepare(os.environ, from_bytewax_argv(sys.argv[1:]), build=build)
    atexit.register(session.finish)
    return session.flow


def lazy_flow(module: str, build: Callable[[Config, Registry], Dataflow]
              ) -> Callable[[str], Dataflow]:
    """A module ``__getattr__`` (PEP 562) that builds ``flow`` on first access, when
    ``bytewax.run`` looks it up, so importing the module for its builder has no side
    effects: no configuration read, no signal handlers, no status thread."""
    built: List[Dataflow] = []

    def getattr_(name: str) -> Dataflow:
        if name != "flow":
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if not built:
            built.append(flow_from_environment(build))
        return built[0]

    return getattr_


__getattr__ = lazy_flow(__name__, build_flow)

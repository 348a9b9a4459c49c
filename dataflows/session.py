"""One run of the flow in this process, from the checked configuration to the closing table.

Both entry points go through :func:`prepare`: ``lobstream run`` (which then calls
Bytewax's ``cli_main`` itself) and ``python -m bytewax.run
dataflows.orderbook:flow`` (where Bytewax calls it). It checks the
configuration (one line and exit status 2 on a bad value), builds the flow,
installs the signal handlers, starts the metrics endpoint and the status line,
and prints the start banner on stderr. :meth:`Session.finish` prints the
end-of-run table on stderr and returns the exit code.

Logging goes to stderr, so stdout holds only what the console and the stdout
sink write: with the stdout sink, JSON lines and nothing else.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from typing import Callable, Mapping, Optional, TextIO

from bytewax.dataflow import Dataflow

from dataflows.banner import banner
from dataflows.config import Config, ConfigError, load_config
from dataflows.launch import Launch
from dataflows.orderbook import build_flow, planner
from dataflows.monitoring import register_collector, serve_metrics, start_status_log
from dataflows.report import closing, exit_code
from dataflows.watch import Activity, products
from sources.kafka.client import KafkaSetupError
from sources.runtime import shutdown
from sources.runtime.registry import Registry

#: Exit status of a configuration error (as argparse uses for usage errors).
CONFIG_ERROR = 2
#: Allocations (net of frees) between young garbage collections (Python's default:
#: 700); see :func:`tune_gc`.
GC_YOUNG_THRESHOLD = 10_000


class Session:
    """The flow of this process with everything that reports on it."""

    def __init__(self, cfg: Config, launch: Launch, registry: Registry, flow: Dataflow,
                 activity: Activity) -> None:
        self.cfg = cfg
        self.launch = launch
        self.registry = registry
        self.flow = flow
        self.activity = activity
        self.started = time.monotonic()
        self._finished = False

    def banner(self) -> str:
        reads_feeds = not self.cfg.replay and self.cfg.input == "websocket"
        plans = planner(self.cfg)(self.launch.total_workers) if reads_feeds else []
        return banner(self.cfg, self.launch, plans, self.registry.streams)

    def finish(self, out: TextIO = sys.stderr) -> int:
        """Print the end-of-run table (once) and return the run's exit code."""
        views = products(self.registry, self.activity)
        if not self._finished:
            self._finished = True
            where = f" (process {self.launch.process} of {self.launch.processes})" \
                if self.launch.processes > 1 else ""
            out.write("\n".join(closing(views, time.monotonic() - self.started, where)) + "\n")
            out.flush()
        return exit_code(views)


def prepare(env: Mapping[str, str], launch: Launch, *, err: TextIO = sys.stderr,
            cfg: Optional[Config] = None,
            build: Callable[[Config, Registry], Dataflow] = build_flow) -> Session:
    """Check the configuration, build the flow (the book flow, or another
    ``build`` such as the Kafka capture's) and start reporting on it.

    A configuration error exits with one line and status 2; so does a Kafka
    setup problem found while building (brokers unreachable, a topic missing)."""
    logging.basicConfig(level=logging.INFO, stream=err,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = Registry()
    try:
        cfg = cfg or load_config(env)
        dataflow = build(cfg, registry)
    except KafkaSetupError as ex:
        err.write(f"lobstream: {ex}\n")
        raise SystemExit(CONFIG_ERROR) from None
    except (ConfigError, ValueError, OSError) as ex:
        err.write(f"lobstream: configuration error: {ex}\n")
        raise SystemExit(CONFIG_ERROR) from None
    activity = Activity(registry)
    session = Session(cfg, launch, registry, dataflow, activity)
    shutdown.install_signal_handlers()
    register_collector(registry, activity)
    err.write(session.banner() + "\n")
    err.flush()
    if cfg.metrics_addr:
        try:
            serve_metrics(cfg.metrics_addr, launch.process)
        except OSError as ex:
            err.write(f"lobstream: configuration error: metrics_addr={cfg.metrics_addr}: "
                      f"cannot listen ({ex.strerror or ex})\n")
            raise SystemExit(CONFIG_ERROR) from None
    if cfg.status_interval > 0:
        start_status_log(registry, cfg.status_interval, activity)
    tune_gc()
    return session


def tune_gc() -> None:
    """Collect garbage less eagerly in a flow process.

    The flow allocates a few hundred tracked objects per frame (records, lists,
    tuples), nearly all freed by reference counting within the batch, yet with the
    default threshold of 700 they trigger a young collection every few frames and,
    through them, full collections that traverse every object alive. Everything
    built at start-up (modules, configuration, the flow) is moved out of the
    generations (``gc.freeze``), and young collections run every
    :data:`GC_YOUNG_THRESHOLD` allocations. Measured with callgrind over the
    Coinbase recording's repeated passes (marginal instructions per frame, whole
    ``python -m bytewax.run`` flow): 222,000 -> 216,000 with the freeze, 212,700
    with the threshold too (50,000 gives no more). Cycles are still collected.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

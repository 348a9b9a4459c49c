"""Graceful stop on SIGINT/SIGTERM, for one process and for a whole cluster.

Bytewax treats a signal as an abort: no ``close()`` on sources or sinks, exit
status 1 or 130. lobstream instead turns the signal into end-of-input: every
partition sees :func:`requested` on its next poll and ends, so Bytewax finishes
the epoch, closes the sinks (flushing whole lines) and the run exits 0.

In a run of several processes a signal reaches only the process it was sent to
(Ctrl-C in one terminal), and Bytewax keeps the cluster running until every
process's inputs have ended: there is no cluster-wide stop and no edge from a
step back to a source. So the process that got the signal tells the others
through the dataflow itself: before its partitions end, the first of them emits
one :class:`StopRequest` keyed to each worker of the cluster (:func:`farewell`);
the book step that receives one calls :func:`request` in its own process, whose
partitions then end at their next poll, and the whole run exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import List, NamedTuple, Optional, Tuple

from sources.runtime.placement import routing_key

log = logging.getLogger("lobstream")

_stop = threading.Event()
_lock = threading.Lock()
#: Whether this process was stopped by a signal (not told by another process), and
#: whether its stop requests to the other workers went out already.
_state = {"signalled": False, "told": False}

#: Routing-key prefix of the stop requests; no venue is called that.
STOP_VENUE = "lobstream-stop"


class StopRequest(NamedTuple):
    """End the run: sent by the process that received the signal to every worker."""

    origin: str


def requested() -> bool:
    """Whether a stop was asked for."""
    return _stop.is_set()


def request() -> None:
    """Ask every partition of this process to end at its next poll."""
    _stop.set()


def told(request: StopRequest) -> None:
    """Another process of the cluster was stopped: stop this one too."""
    if not _stop.is_set():
        log.info("the run was stopped at %s (another process): stopping inputs, flushing sinks",
                 request.origin)
    _stop.set()


def install_signal_handlers() -> None:
    """Make SIGINT and SIGTERM stop the run cleanly (a second signal aborts)."""

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        if _stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received: stopping inputs, flushing sinks", signal.Signals(signum).name)
        _state["signalled"] = True
        _stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def farewell(worker: int, workers: int) -> List[Tuple[str, StopRequest]]:
    """The stop requests a stopping partition emits before it ends: one keyed to
    every worker of the cluster, from the first partition of the process that got
    the signal; nothing otherwise (a single worker, or already sent)."""
    if workers <= 1 or not _state["signalled"]:
        return []
    with _lock:
        if _state["told"]:
            return []
        _state["told"] = True
    origin = f"worker {worker}"
    return [(routing_key(STOP_VENUE, "all", w, workers), StopRequest(origin))
            for w in range(workers)]

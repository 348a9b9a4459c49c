"""Graceful stop on SIGINT/SIGTERM, for one process and for a whole cluster, and
clean failure with an exit code.

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
the book step that receives one calls :func:`told` in its own process, whose
partitions then end at their next poll, and the whole run exits 0.

A step that cannot go on (a sink that gave up on a full disk) calls
:func:`fail`: the same orderly stop of the whole cluster, but this process exits
with the recorded status. Bytewax itself returns normally in that case, so
``python -m bytewax.run`` would exit 0; the ``atexit`` hook that
:func:`install_signal_handlers` registers turns the recorded failure into the
exit status.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import List, NamedTuple, Optional, Tuple

from sources.runtime.placement import routing_key

log = logging.getLogger("lobstream")

_stop = threading.Event()
_lock = threading.Lock()
_exit_code: Optional[int] = None
_installed = False
#: Whether this process stopped on its own (a signal or a failure, not told by
#: another process), and whether its stop requests to the other workers went out.
_state = {"origin": False, "told": False}

#: How often :func:`wait` looks at the stop flag while it sleeps.
_WAIT_SLICE = 0.05
#: Routing-key prefix of the stop requests; no venue is called that.
STOP_VENUE = "lobstream-stop"


class StopRequest(NamedTuple):
    """End the run: sent by the process that stopped first to every worker."""

    origin: str


def requested() -> bool:
    """Whether a stop was asked for."""
    return _stop.is_set()


def request() -> None:
    """Ask every partition of this process to end at its next poll."""
    _stop.set()


def told(request: StopRequest) -> None:
    """Another process of the cluster stopped: stop this one too."""
    if not _stop.is_set():
        log.info("the run was stopped at %s (another process): stopping inputs, flushing sinks",
                 request.origin)
    _stop.set()


def fail(message: str, code: int = 1) -> None:
    """Stop the run because something cannot continue, and exit with ``code``.

    Logs ``message`` as one ERROR line, records ``code`` (the first failure's code
    is kept: it names the cause, later ones are consequences) and requests a stop
    like SIGTERM does: sources end at their next poll, the sinks are closed, and
    the other processes of the cluster are told to stop too.
    """
    if not 1 <= code <= 255:
        raise ValueError(f"exit code {code!r}: expected 1 to 255")
    global _exit_code
    log.error("%s", message)
    with _lock:
        if _exit_code is None:
            _exit_code = code
    _state["origin"] = True
    _stop.set()


def exit_code() -> int:
    """The status this process will exit with: 0, or the first :func:`fail` code."""
    return _exit_code or 0


def wait(seconds: float) -> bool:
    """Sleep up to ``seconds``, returning early when a stop is requested; returns
    whether one was.

    It polls instead of blocking on the event, because ``Event.set`` from the
    signal handler could deadlock against a main thread that is inside
    ``Event.wait`` itself (single-worker runs execute steps on the main thread).
    """
    deadline = time.monotonic() + seconds
    while not _stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0.0:
            return False
        time.sleep(min(left, _WAIT_SLICE))
    return True


def install_signal_handlers() -> None:
    """Make SIGINT and SIGTERM stop the run cleanly (a second signal aborts), and
    make the process exit with the :func:`fail` code, if any, once Bytewax returns."""
    global _installed

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        if _stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received: stopping inputs, flushing sinks", signal.Signals(signum).name)
        _state["origin"] = True
        _stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if not _installed:
        _installed = True
        atexit.register(_exit_with_code)


def farewell(worker: int, workers: int) -> List[Tuple[str, StopRequest]]:
    """The stop requests a stopping partition emits before it ends: one keyed to
    every worker of the cluster, from the first partition of the process that
    stopped first; nothing otherwise (a single worker, or already sent)."""
    if workers <= 1 or not _state["origin"]:
        return []
    with _lock:
        if _state["told"]:
            return []
        _state["told"] = True
    origin = f"worker {worker}"
    return [(routing_key(STOP_VENUE, "all", w, workers), StopRequest(origin))
            for w in range(workers)]


def _exit_with_code() -> None:
    """At interpreter exit: end with the recorded failure code, if there is one.

    ``os._exit`` is the only way to set the status from an ``atexit`` hook
    (``SystemExit`` raised there is ignored). It skips the hooks registered
    before this one, logging's among them, so stdio and the log handlers are
    flushed first.
    """
    code = _exit_code
    if not code:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say
            pass
    os._exit(code)

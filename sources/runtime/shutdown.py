"""Graceful stop on SIGINT/SIGTERM, and clean failure with an exit code.

Bytewax treats a signal as an abort: no ``close()`` on sources or sinks, exit
status 1 or 130. lobstream instead turns the signal into end-of-input: every
partition sees :func:`requested` on its next poll and ends, so Bytewax finishes
the epoch, closes the sinks (flushing whole lines) and the run exits 0.

A step that cannot go on (a sink that gave up on a full disk) calls
:func:`fail`: the same orderly stop, but the process exits with the recorded
status. Bytewax itself returns normally in that case, so ``python -m
bytewax.run`` would exit 0; the ``atexit`` hook that
:func:`install_signal_handlers` registers turns the recorded failure into the
exit status. Like a signal, a failure is seen by the sources of its own process
only (the flag is process-local): in a multi-process run the other processes'
sources keep running until they end or are signalled.
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
from typing import Optional

log = logging.getLogger("lobstream")

_stop = threading.Event()
_lock = threading.Lock()
_exit_code: Optional[int] = None
_installed = False

#: How often :func:`wait` looks at the stop flag while it sleeps.
_WAIT_SLICE = 0.05


def requested() -> bool:
    """Whether a stop was asked for."""
    return _stop.is_set()


def request() -> None:
    """Ask every partition of this process to end at its next poll."""
    _stop.set()


def fail(message: str, code: int = 1) -> None:
    """Stop the run because something cannot continue, and exit with ``code``.

    Logs ``message`` as one ERROR line, records ``code`` (the first failure's code
    is kept: it names the cause, later ones are consequences) and requests a stop
    like SIGTERM does: sources end at their next poll and the sinks are closed.
    """
    if not 1 <= code <= 255:
        raise ValueError(f"exit code {code!r}: expected 1 to 255")
    global _exit_code
    log.error("%s", message)
    with _lock:
        if _exit_code is None:
            _exit_code = code
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
        _stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if not _installed:
        _installed = True
        atexit.register(_exit_with_code)


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

"""Graceful stop on SIGINT/SIGTERM.

Bytewax treats a signal as an abort: no ``close()`` on sources or sinks, exit
status 1 or 130. lobstream instead turns the signal into end-of-input: every
partition sees :func:`requested` on its next poll and ends, so Bytewax finishes
the epoch, closes the sinks (flushing whole lines) and the run exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Optional

log = logging.getLogger("lobstream")

_stop = threading.Event()


def requested() -> bool:
    """Whether a stop was asked for."""
    return _stop.is_set()


def request() -> None:
    """Ask every partition of this process to end at its next poll."""
    _stop.set()


def install_signal_handlers() -> None:
    """Make SIGINT and SIGTERM stop the run cleanly (a second signal aborts)."""

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        if _stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received: stopping inputs, flushing sinks", signal.Signals(signum).name)
        _stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)

"""Run a simulator server in a background thread, for synchronous callers.

Tests and benchmarks drive clients (or whole Bytewax dataflows) from ordinary
blocking code; they need the server on its own event loop, started and stopped
with plain calls.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from sources.simulator.candles import Prints
from sources.simulator.clock import ExchangeClock
from sources.simulator.context import SimulatorConfig
from sources.simulator.faults import FaultPlan
from sources.simulator.market import load_recording
from sources.simulator.outbox import FilterFactory, SendLog
from sources.simulator.recording import Recording
from sources.simulator.server import SimulatorServer
from sources.simulator.stats import SimulatorStats


class SimulatorThread:
    """A :class:`~sources.simulator.server.SimulatorServer` on a daemon thread.

    ``captures`` is a list of capture paths or an already loaded
    :class:`~sources.simulator.recording.Recording` (load once, serve many times).
    Keyword arguments other than ``host``, ``port``, ``send_log``,
    ``frame_filters`` and ``faults`` are
    :class:`~sources.simulator.context.SimulatorConfig` fields (``retime``,
    ``clone_books``, ``schedule``, ``limits``...). To collect the send log in
    memory pass ``send_log=records.append``.

    Usage::

        with SimulatorThread(paths, speed=0) as sim:
            connect(sim.url + "/coinbase")
            get(sim.http_url + "/deribit/api/v2/public/get_instruments?currency=BTC")
            assert sim.stats["deribit"].refused_handshakes == 0
    """

    def __init__(self, captures: Union[Recording, Sequence[Union[str, Path]]], *,
                 host: str = "127.0.0.1", port: int = 0,
                 send_log: Optional[SendLog] = None,
                 frame_filters: Optional[FilterFactory] = None,
                 faults: Optional[FaultPlan] = None,
                 candles: Optional[Prints] = None,
                 **config: Any) -> None:
        recording = captures if isinstance(captures, Recording) else load_recording(captures)
        self.server = SimulatorServer(recording, host=host, port=port,
                                      config=SimulatorConfig(**config),
                                      send_log=send_log, frame_filters=frame_filters,
                                      faults=faults, candles=candles)
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None

    @property
    def url(self) -> str:
        """``ws://host:port``; append ``/coinbase`` or ``/deribit``."""
        return self.server.url

    @property
    def http_url(self) -> str:
        """``http://host:port``; append a REST prefix (``/deribit``...) and path."""
        return self.server.http_url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def stats(self) -> SimulatorStats:
        """What clients did so far (readable from any thread)."""
        return self.server.stats

    def credentials_seen(self) -> List[str]:
        """Tokens issued and signatures accepted so far (readable from any thread)."""
        return self.server.credentials_seen()

    def clock(self, venue: str) -> ExchangeClock:
        """The exchange clock ``venue`` sends times on (``clock(v).offset_ms``)."""
        return self.server.clock(venue)

    def start(self, timeout: float = 10.0) -> str:
        """Start listening and return :attr:`url`; raises what the server raised."""
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),),
                                        name="lobstream-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start")
        if self._error is not None:
            self._thread.join(timeout)  # it has returned already
            self._thread = self._loop = self._stop = None
            raise self._error
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Close all connections and stop the thread."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        self._thread = self._loop = self._stop = None

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # handed to start()'s caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.stop()

    def __enter__(self) -> "SimulatorThread":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

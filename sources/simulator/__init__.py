"""A local exchange simulator that speaks the real venues' protocols.

It replays recorded book data (lobstream captures) to any number of clients over
real websockets, one path per venue: Coinbase Advanced Trade on ``/coinbase``,
Coinbase Exchange on ``/coinbase-exchange``, Deribit JSON-RPC on ``/deribit``
(alias ``/ws/api/v2``), Binance spot, USD-M and COIN-M on ``/binance/stream``,
``/binance_usdm/public/stream`` (and ``/market/stream``) and
``/binance_coinm/stream``; and answers the venues' REST APIs (instrument lists,
Binance depth snapshots consistent with the diffs served) on the same port under
the same prefixes. Books, trades and tickers ride one replay per connection, in
recorded order. lobstream's sources can then be tested and benchmarked end to
end, offline and deterministically: every connection replays the same data from
the start, and resyncs are answered from the book state the connection has been
sent. Exchange times are moved to the server's start
(:mod:`~sources.simulator.clock`), instruments can be cloned and scheduled
(:mod:`~sources.simulator.universe`), and the venues' connection and rate caps
apply (:mod:`~sources.simulator.limits`).

Each venue lives in one module of :mod:`sources.simulator.exchanges`; the rest of
the package is generic. ``python -m sources.simulator --capture PATH`` runs it
from the command line; :class:`SimulatorThread` runs it in the background of
synchronous code, and :class:`SimulatorServer` inside an existing event loop. A
:class:`FaultPlan` (:mod:`sources.simulator.faults`) makes it misbehave on purpose.
Started with test API keys (``SimulatorConfig.api_keys``, ``--api-key``) it checks
authentication for real: Deribit tokens that expire, Coinbase Exchange signatures
within a 30 s window.
"""

from sources.simulator.context import SimulatorConfig
from sources.simulator.faults import Fault, FaultPlan, FaultRecord, random_faults
from sources.simulator.limits import Limits
from sources.simulator.market import CaptureError, load_recording
from sources.simulator.outbox import FilterFactory, FrameFilter, OutFrame, SendLog, SendRecord
from sources.simulator.recording import RecordedFrame, Recording
from sources.simulator.server import ROUTES, SimulatorServer
from sources.simulator.stats import SimulatorStats, VenueStats
from sources.simulator.thread import SimulatorThread
from sources.simulator.universe import Listing

__all__ = [
    "CaptureError", "Fault", "FaultPlan", "FaultRecord", "FilterFactory", "FrameFilter",
    "Limits", "Listing", "OutFrame", "ROUTES", "RecordedFrame", "Recording", "SendLog",
    "SendRecord", "SimulatorConfig", "SimulatorServer", "SimulatorStats", "SimulatorThread",
    "VenueStats", "load_recording", "random_faults",
]

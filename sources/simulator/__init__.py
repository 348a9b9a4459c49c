"""A local exchange simulator that speaks the real venues' websocket protocols.

It replays recorded book data (lobstream captures) to any number of clients over
real websockets: Coinbase Advanced Trade on ``/coinbase`` and Deribit JSON-RPC on
``/deribit`` (alias ``/ws/api/v2``). lobstream's sources can then be tested and
benchmarked end to end, offline and deterministically: every connection replays
the same data from the start, and resyncs are answered from the book state the
connection has been sent.

``python -m sources.simulator --capture PATH`` runs it from the command line;
:class:`SimulatorThread` runs it in the background of synchronous code, and
:class:`SimulatorServer` inside an existing event loop. A :class:`FaultPlan`
(:mod:`sources.simulator.faults`) makes it misbehave on purpose.
"""

from sources.simulator.context import SimulatorConfig
from sources.simulator.faults import Fault, FaultPlan, FaultRecord, random_faults
from sources.simulator.market import Recording, RecordedFrame, load_recording
from sources.simulator.outbox import FilterFactory, FrameFilter, OutFrame, SendLog, SendRecord
from sources.simulator.server import ROUTES, SimulatorServer
from sources.simulator.thread import SimulatorThread

__all__ = [
    "Fault", "FaultPlan", "FaultRecord", "FilterFactory", "FrameFilter", "OutFrame", "ROUTES",
    "RecordedFrame", "Recording", "SendLog", "SendRecord", "SimulatorConfig",
    "SimulatorServer", "SimulatorThread", "load_recording", "random_faults",
]

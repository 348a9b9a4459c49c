"""Settings and shared state every session of one simulator server reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from sources.simulator.market import Recording
from sources.simulator.outbox import FilterFactory, SendLog

if TYPE_CHECKING:
    from sources.simulator.faults import FaultPlan


@dataclass(frozen=True)
class SimulatorConfig:
    """What a simulator run can be told (CLI flags map one to one).

    ``speed``/``rate``: see :mod:`sources.simulator.pacing`. ``subscribe_timeout``:
    Coinbase closes a connection that has not subscribed within it (5 s, as the
    real feed). ``min_heartbeat``: the smallest interval Deribit's
    ``public/set_heartbeat`` accepts (10 s on the real server; tests lower it).
    ``compression``: offer permessage-deflate, as both real venues do; off by
    default because on loopback it only costs CPU that benchmarks would measure.
    """

    speed: float = 1.0
    rate: Optional[float] = None
    subscribe_timeout: float = 5.0
    min_heartbeat: float = 10.0
    compression: bool = False

    def __post_init__(self) -> None:
        if self.speed < 0 or (self.rate is not None and self.rate <= 0):
            raise ValueError("speed must be >= 0 and rate > 0")


@dataclass(frozen=True)
class ServerContext:
    """One server's recording, settings and hooks; ``started`` is the event-loop
    time the server started, the origin of server-wide clocks (Coinbase's
    heartbeat counter). ``faults`` answers the sessions' subscribe-time question
    (:meth:`~sources.simulator.session.Session.subscribe_error`); its frame faults
    come in through ``frame_filters``."""

    recording: Recording
    config: SimulatorConfig
    started: float
    send_log: Optional[SendLog] = None
    frame_filters: Optional[FilterFactory] = None
    faults: Optional["FaultPlan"] = None

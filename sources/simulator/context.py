"""Settings and shared state every session of one simulator server reads."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Deque, Dict, Mapping, Optional, Sequence, Union

from sources.simulator.clock import RETIME_MODES, ExchangeClock
from sources.simulator.limits import ClientLimiter
from sources.simulator.outbox import FilterFactory, SendLog
from sources.simulator.recording import Recording
from sources.simulator.stats import SimulatorStats
from sources.simulator.universe import Listing, Universe

if TYPE_CHECKING:
    from sources.simulator.exchanges.base import SimulatedExchange
    from sources.simulator.faults import FaultPlan

#: The venues' REST replies bundled with lobstream (see recordings/PROVENANCE.md).
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "recordings" / "reference"


@dataclass(frozen=True)
class SimulatorConfig:
    """What a simulator run can be told (CLI flags map one to one).

    ``speed``/``rate``: see :mod:`sources.simulator.pacing`. ``subscribe_timeout``:
    Coinbase closes a connection that has not subscribed within it (5 s, as the
    real feed). ``min_heartbeat``: the smallest interval Deribit's
    ``public/set_heartbeat`` accepts (10 s on the real server; tests lower it).
    ``compression``: offer permessage-deflate, as both real venues do; off by
    default because on loopback it only costs CPU that benchmarks would measure.
    ``retime``: ``now`` or ``none`` (:mod:`sources.simulator.clock`).
    ``clone_books``, ``schedule``: :mod:`sources.simulator.universe`.
    ``limits``: per venue, :class:`~sources.simulator.limits.Limits` fields to
    change from the venue's defaults (None: no cap), e.g.
    ``{"deribit": {"max_connections": 64}}``. ``reference_dir``: where the REST
    replies are read from (None: serve empty instrument lists).

    Binance: ``lifetime`` closes a connection after that many seconds (None: the
    venue's 24 h), after a ``serverShutdown`` event ``shutdown_notice`` seconds
    before (at most the lifetime); ``ping_interval``/``pong_timeout`` replace the
    venue's keepalive (spot 20 s / 60 s, futures 180 s / 600 s);
    ``weight_window`` is the REST weight budget's window (a minute on the venue).
    Tests shorten them all.

    ``api_keys``: per venue, the API keys its authentication accepts, each a
    tuple of the venue's key fields (Deribit ``(client_id, client_secret)``,
    Coinbase Exchange ``(key, base64 secret, passphrase)``); a venue without any
    refuses every authentication, as for an account that does not exist.
    ``token_lifetime``: seconds a Deribit access token lives (the real server's
    ``expires_in`` is 900; tests shorten it). ``clock_skew``: seconds the
    venues' clock runs ahead of this machine's where timestamped signatures are
    checked (Coinbase Exchange's 30 s window), to simulate a client whose clock
    is off.
    """

    speed: float = 1.0
    rate: Optional[float] = None
    subscribe_timeout: float = 5.0
    min_heartbeat: float = 10.0
    compression: bool = False
    retime: str = "now"
    clone_books: bool = False
    schedule: Sequence[Listing] = ()
    limits: Mapping[str, Mapping[str, Optional[int]]] = field(default_factory=dict)
    reference_dir: Optional[Union[str, Path]] = REFERENCE_DIR
    lifetime: Optional[float] = None
    shutdown_notice: float = 600.0
    ping_interval: Optional[float] = None
    pong_timeout: Optional[float] = None
    weight_window: float = 60.0
    api_keys: Mapping[str, Sequence[Sequence[str]]] = field(default_factory=dict)
    token_lifetime: float = 900.0
    clock_skew: float = 0.0

    def __post_init__(self) -> None:
        # Frozen, so normalised through object.__setattr__ (lists and strings in).
        object.__setattr__(self, "schedule", tuple(self.schedule))
        object.__setattr__(self, "api_keys", {venue: tuple(tuple(key) for key in keys)
                                              for venue, keys in self.api_keys.items()})
        if not self.token_lifetime >= 1:
            raise ValueError("token_lifetime must be at least 1 s")
        if self.reference_dir is not None:
            object.__setattr__(self, "reference_dir", Path(self.reference_dir))
        if self.speed < 0 or (self.rate is not None and self.rate <= 0):
            raise ValueError("speed must be >= 0 and rate > 0")
        for name in ("lifetime", "ping_interval", "pong_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if self.shutdown_notice < 0 or self.weight_window <= 0:
            raise ValueError("shutdown_notice must be >= 0 and weight_window > 0 seconds")
        if self.retime not in RETIME_MODES:
            raise ValueError(f"retime must be one of {', '.join(RETIME_MODES)}, "
                             f"got {self.retime!r}")


@dataclass(frozen=True)
class VenueState:
    """One venue's part of a running server: its clock (fixed at start), its
    instruments, the recorded time its pacing starts from, and the live state
    its sessions and REST handlers share (``shared``, the venue's own)."""

    exchange: "SimulatedExchange"
    clock: ExchangeClock
    universe: Universe
    book_start: Optional[float]
    shared: Any = None


#: Tokens and signatures remembered per server (a soak refreshes for hours).
MAX_SEEN = 10_000


@dataclass(frozen=True)
class ServerContext:
    """One server's recording, settings and hooks. ``started`` is the event-loop
    time the server started, the origin of server-wide clocks (Coinbase's
    heartbeat counter, the instrument schedule). ``faults`` answers the sessions'
    subscribe-time question (:meth:`~sources.simulator.session.Session.subscribe_error`);
    its frame faults come in through ``frame_filters``."""

    recording: Recording
    config: SimulatorConfig
    started: float
    venues: Dict[str, VenueState]
    stats: SimulatorStats
    limiter: ClientLimiter
    send_log: Optional[SendLog] = None
    frame_filters: Optional[FilterFactory] = None
    faults: Optional["FaultPlan"] = None
    #: Every token the venues issued and every signature they accepted, newest
    #: last: what a client must never write into its logs, captures or metrics.
    credentials_seen: Deque[str] = field(default_factory=lambda: deque(maxlen=MAX_SEEN))

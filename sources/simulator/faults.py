"""Fault injection: the ways a real exchange connection goes wrong, on demand.

A :class:`FaultPlan` holds :class:`Fault` descriptions and plugs them into a
simulator server (``SimulatorServer(..., faults=plan)``): frame faults through the
outbox's frame filter (:mod:`sources.simulator.outbox`), refused handshakes at
the server, refused subscribes in the sessions. Client code (lobstream's sources)
can then be tested against each failure on purpose, and soaked against random
ones that repeat exactly with the same seed.

**Scope.** A fault applies to every connection unless ``venue`` (``coinbase``,
``deribit``...), ``connection`` (the server's connection number, from 0) or
``product`` narrows it.

**Trigger.** Faults count *units* on each connection separately: book frames of
their product (or of any product, without ``product``), or for ``error`` the
subscribe requests naming the product. Positional: the first injection is at
unit ``after + every`` (``every`` defaults to 1, so ``after=N`` is the unit right
after the Nth), then every ``every`` units, ``count`` times in all (default once,
or without limit when ``every`` is given). Random: ``probability`` per unit after
the first ``after``, from one RNG per connection seeded by ``(seed, venue,
connection)``, so a run repeats exactly whatever other connections do. At most
one fault changes a given frame: a fault that is due while another one fires (or
that cannot apply, as ``bad_size`` on a frame without levels) fires on the next
frame in its scope instead. ``refuse`` changes no frame and fires alongside.

**Kinds** (parameters after the colon):

* ``drop``, ``duplicate``: the frame is not sent / sent twice.
* ``swap``: the frame is held back and sent right after the product's next one
  (if the product sends no other, it is lost).
* ``gap`` (``frames``, default 1): that many book frames of the product are not
  sent (each one logged). Coinbase stamps before the filter, so ``sequence_num``
  jumps; on Deribit the next ``prev_change_id`` does not match, on Binance the
  next diff's ``U`` (spot) or ``pu`` (futures).
* ``chain_break``: the frame is sent with its data intact but its link to the
  one before broken: Binance futures ``pu`` one less, spot ``U`` one more (only
  where ``U < u``), Deribit ``prev_change_id`` one less. Venues without such a
  link (Coinbase) never fire it.
* ``close`` (``code`` 1011, ``reason``): a clean close handshake after the frame.
* ``abort``: the TCP connection is dropped after the frame, with no close frame.
* ``stall`` (``duration`` s, ``pings``): nothing is sent for ``duration`` (no
  data, no heartbeats, no replies). With ``pings=false`` nothing is read either,
  so pings go unanswered and the server's keepalive pings stop: a client that
  pings every 20 s notices a long stall, as it would a dead server.
* ``refuse`` (``duration`` s, ``mode`` http|reset): for ``duration`` new
  connections to the fault's venue (all venues without one) are refused, with HTTP
  503 at the handshake or a TCP reset.
* ``malformed``: after the frame, a frame that is not JSON (a truncated copy).
* ``unknown_type`` (``name``): after the frame, a well-formed message of an
  unknown channel (Coinbase; it takes the next ``sequence_num``, as any real
  message does) or method (Deribit).
* ``bad_size`` (``value`` negative|nan|text): the frame with one level's size
  replaced by a negative number, ``"NaN"`` or a word. NaN goes as a string even
  on Deribit, where sizes are numbers: JSON has no NaN, and a bare ``NaN`` token
  would be a malformed frame instead.
* ``oversized`` (``size`` bytes, default 2 MiB): the frame padded to that size
  with an extra JSON field, so a client with a smaller ``max_size`` fails on it.
* ``error`` (``code``, ``message``; needs ``product``): a subscribe naming the
  product is refused with an error (Deribit: JSON-RPC error ``code``, default
  11050, for the whole request; Coinbase: an ``error`` message, nothing
  subscribed); other products subscribe normally. ``every=1`` refuses them all.

**REST faults** count the REST requests to the fault's venue (all venues without
one) whose path, below the venue's prefix, starts with ``path`` (any without),
over the whole server rather than per connection:

* ``http_error`` (``status``, default 503; ``retry_after`` s): the request is
  answered with that status and the venue's error body (429: Deribit's
  ``10028 too_many_requests``...), with a ``Retry-After`` header if asked.
* ``slow_reply`` (``duration`` s): the reply is sent after ``duration``.
* ``stale_snapshot`` (``frames``, default 1, at most
  :data:`~sources.simulator.rest.LAG_MAX`): a book snapshot reply (Binance
  ``/depth``; other routes are not counted) is the book as of ``frames`` diffs
  before the stream, or as far back as the recording allows.

How a venue's frames are edited (where a level's size is, what an unknown
message looks like) is the venue's own (:mod:`sources.simulator.exchanges`).
Every injection is recorded as a :class:`FaultRecord` in :attr:`FaultPlan.injected`.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import (Any, Callable, Dict, FrozenSet, Iterable, List, NamedTuple, Optional,
                    Sequence)

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from sources.simulator import outbox
from sources.simulator.exchanges import exchange
from sources.simulator.outbox import BOOK, DATA, FrameFilter, OutFrame
from sources.simulator.rest import LAG_MAX

DROP, DUPLICATE, SWAP, GAP = "drop", "duplicate", "swap", "gap"
CLOSE, ABORT, STALL, REFUSE = "close", "abort", "stall", "refuse"
MALFORMED, UNKNOWN_TYPE, BAD_SIZE, OVERSIZED = "malformed", "unknown_type", "bad_size", "oversized"
CHAIN_BREAK = "chain_break"
ERROR = "error"
HTTP_ERROR, SLOW_REPLY, STALE_SNAPSHOT = "http_error", "slow_reply", "stale_snapshot"
#: Kinds that count REST requests rather than a connection's frames.
REST_KINDS = frozenset((HTTP_ERROR, SLOW_REPLY, STALE_SNAPSHOT))

#: Every kind, with the parameters of its own it takes (besides the scope and
#: trigger ones every kind takes).
KINDS: Dict[str, FrozenSet[str]] = {
    DROP: frozenset(), DUPLICATE: frozenset(), SWAP: frozenset(),
    GAP: frozenset({"frames"}),
    CLOSE: frozenset({"code", "reason"}), ABORT: frozenset(),
    STALL: frozenset({"duration", "pings"}), REFUSE: frozenset({"duration", "mode"}),
    MALFORMED: frozenset(), UNKNOWN_TYPE: frozenset({"name"}),
    BAD_SIZE: frozenset({"value"}), OVERSIZED: frozenset({"size"}),
    CHAIN_BREAK: frozenset(),
    ERROR: frozenset({"code", "message"}),
    HTTP_ERROR: frozenset({"path", "status", "retry_after"}),
    SLOW_REPLY: frozenset({"path", "duration"}),
    STALE_SNAPSHOT: frozenset({"path", "frames"}),
}
SCOPE_AND_TRIGGER = frozenset({"kind", "venue", "connection", "product",
                               "after", "every", "count", "probability"})
#: What ``--random-faults`` injects unless told otherwise: faults of the stream
#: that a client must survive without losing its connection.
RANDOM_KINDS = (DROP, DUPLICATE, SWAP, GAP, MALFORMED, UNKNOWN_TYPE, BAD_SIZE)

CLOSE_CODE = 1011
ERROR_CODE = 11050  # Deribit's bad_request
#: A truncated frame is cut at half its length, at most this many characters.
MALFORMED_CHARS = 512
PADDING_KEY = "lobstream_padding"


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "yes", "no", "1", "0"):
        raise ValueError(f"not a boolean: {text!r}")
    return lowered in ("true", "yes", "1")


def _byte_size(text: str) -> int:
    """``2097152``, ``2048k`` or ``2M`` (binary units)."""
    scale = {"k": 2**10, "m": 2**20}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


#: How ``KIND:key=value`` strings are read, per field.
_READERS: Dict[str, Callable[[str], Any]] = {
    "venue": str, "connection": int, "product": str, "after": int, "every": int,
    "count": int, "probability": float, "frames": int, "code": int, "reason": str,
    "duration": float, "pings": _boolean, "mode": str, "value": str, "size": _byte_size,
    "name": str, "message": str, "path": str, "status": int, "retry_after": float,
}


@dataclass(frozen=True)
class Fault:
    """One fault: what to do (``kind`` and its parameters), where (scope) and when
    (trigger); see the module docstring. Parameters another kind takes must stay
    at their defaults, so a misspelt plan fails instead of doing something else."""

    kind: str
    venue: Optional[str] = None
    connection: Optional[int] = None
    product: Optional[str] = None
    after: int = 0
    every: Optional[int] = None
    count: Optional[int] = None
    probability: Optional[float] = None
    frames: int = 1
    code: Optional[int] = None
    reason: str = ""
    duration: float = 5.0
    pings: bool = True
    mode: str = "http"
    value: str = "negative"
    size: int = 2 * 2**20
    name: str = "lobstream_unknown"
    message: Optional[str] = None
    path: Optional[str] = None
    status: int = 503
    retry_after: Optional[float] = None

    def __post_init__(self) -> None:
        own = KINDS.get(self.kind)
        if own is None:
            raise ValueError(f"unknown fault kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        for f in fields(self):
            if f.name not in own and f.name not in SCOPE_AND_TRIGGER \
                    and getattr(self, f.name) != f.default:
                raise ValueError(f"{self.kind} takes no {f.name!r}")
        checks = [
            (self.after >= 0, "after must be >= 0"),
            (self.every is None or self.every >= 1, "every must be >= 1"),
            (self.count is None or self.count >= 1, "count must be >= 1"),
            (self.probability is None or 0 < self.probability <= 1,
             "probability must be in (0, 1]"),
            (self.frames >= 1, "frames must be >= 1"),
            (self.kind != STALE_SNAPSHOT or self.frames <= LAG_MAX,
             f"frames must be <= {LAG_MAX}"),
            (self.kind != CLOSE or self.code is None
             or (1000 <= self.code <= 4999 and self.code not in (1004, 1005, 1006, 1015)),
             "code must be a close code a server may send"),
            (self.duration > 0, "duration must be > 0"),
            (self.mode in ("http", "reset"), "mode must be http or reset"),
            (self.value in ("negative", "nan", "text"), "value must be negative, nan or text"),
            (self.size > 0, "size must be > 0"),
            (self.kind != ERROR or self.product is not None, "error needs a product"),
            (self.kind not in REST_KINDS or (self.connection is None and self.product is None),
             "a REST fault is scoped by venue and path, not connection or product"),
            (400 <= self.status <= 599, "status must be an HTTP error status (400-599)"),
            (self.retry_after is None or self.retry_after >= 0, "retry_after must be >= 0"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(f"{self.kind}: {problem}")

    @property
    def limit(self) -> Optional[int]:
        """How many times the fault fires on one connection (None: no limit)."""
        if self.count is not None:
            return self.count
        return None if self.every is not None or self.probability is not None else 1

    @classmethod
    def parse(cls, spec: str) -> "Fault":
        """``KIND[:key=value,...]``, as the command line takes it, e.g.
        ``close:code=1001,after=50,venue=deribit``."""
        kind, _, rest = spec.partition(":")
        params: Dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or key not in _READERS:
                raise ValueError(f"{spec!r}: expected key=value with key one of "
                                 f"{', '.join(_READERS)}, got {item!r}")
            try:
                params[key] = _READERS[key](text.strip())
            except ValueError:
                raise ValueError(f"{spec!r}: bad value for {key}: {text!r}") from None
        return cls(kind.strip(), **params)


def random_faults(rate: float, kinds: Sequence[str] = RANDOM_KINDS, **scope: Any) -> List[Fault]:
    """Faults for a soak run: about ``rate`` of the book frames get one of
    ``kinds``, chosen evenly (``scope``: any :class:`Fault` scope field)."""
    if not 0 < rate <= 1:
        raise ValueError("the random fault rate must be in (0, 1]")
    if not kinds or ERROR in kinds or REST_KINDS & set(kinds):
        raise ValueError("random faults need frame fault kinds (error counts subscribes, "
                         "http_error and slow_reply REST requests)")
    return [Fault(kind, probability=rate / len(kinds), **scope) for kind in kinds]


class FaultRecord(NamedTuple):
    """One injected fault. ``t_ms``: wall clock, epoch ms. ``connection`` is None
    for a refused handshake (it never became a connection) and a REST fault, whose
    ``product`` is the request's path. ``seq`` is the
    ``sequence_num``/``change_id`` of the book frame the fault hit, where known;
    frames a fault adds (``malformed``, ``unknown_type``) follow that frame."""

    t_ms: float
    venue: str
    connection: Optional[int]
    product: Optional[str]
    kind: str
    seq: Optional[int]


class SubscribeError(NamedTuple):
    """How a session must refuse a subscribe (Coinbase sends only ``message``)."""

    code: int
    message: str


class _Trigger:
    """When one fault fires on one connection, counting units in its scope."""

    __slots__ = ("fault", "_seen", "_fired", "_next", "_pending")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self._seen = 0
        self._fired = 0
        self._next = fault.after + (fault.every or 1)
        self._pending = False

    def observe(self, rng: random.Random) -> bool:
        """Count one unit; True if the fault is due (and stays due until fired)."""
        fault = self.fault
        self._seen += 1
        limit = fault.limit
        if limit is not None and self._fired >= limit:
            return False
        if not self._pending:
            if fault.probability is not None:
                self._pending = self._seen > fault.after and rng.random() < fault.probability
            else:
                self._pending = self._seen >= self._next
        return self._pending

    def fire(self) -> None:
        self._fired += 1
        self._pending = False
        self._next = self._seen + (self.fault.every or 1)


def _bad_value(value: str, size: Any) -> Any:
    if value == "nan":
        return "NaN"
    if value == "text":
        return "lots"
    if isinstance(size, str):  # Coinbase decimals are strings
        return "-" + size.lstrip("-") if float(size) else "-1"
    return -abs(size) or -1


def _with_bad_size(venue: str, msg: Dict[str, Any], value: str) -> Optional[Dict[str, Any]]:
    """A copy of ``msg`` with one level's size broken (a level that is not being
    removed, where there is one: a client may ignore the size of a removal)."""
    edited = orjson.loads(orjson.dumps(msg))  # the original is shared with the recording
    slots = exchange(venue).size_slots(edited)
    if not slots:
        return None
    container, key = next((s for s in slots if float(s[0][s[1]]) != 0), slots[0])
    container[key] = _bad_value(value, container[key])
    return edited


def _padded(msg: Dict[str, Any], size: int) -> Dict[str, Any]:
    padded = {**msg, PADDING_KEY: ""}
    padded[PADDING_KEY] = "x" * max(0, size - len(orjson.dumps(padded)))
    return padded


def _truncated(msg: Dict[str, Any]) -> str:
    """A proper prefix of a JSON object is never JSON."""
    text = orjson.dumps(msg).decode()
    return text[:min(len(text) // 2, MALFORMED_CHARS)]


class _ConnectionFaults:
    """One connection's faults: its frame filter and its subscribe check."""

    def __init__(self, plan: "FaultPlan", venue: str, number: int) -> None:
        self._plan = plan
        self.venue = venue
        self.number = number
        self._rng = random.Random(f"{plan.seed}/{venue}/{number}")
        mine = [f for f in plan.faults
                if f.venue in (None, venue) and f.connection in (None, number)]
        self.frame_triggers = [_Trigger(f) for f in mine
                               if f.kind != ERROR and f.kind not in REST_KINDS]
        self._subscribe_triggers = [_Trigger(f) for f in mine if f.kind == ERROR]
        self._skipping: Dict[Optional[str], int] = {}
        self._held: Dict[Optional[str], OutFrame] = {}
        self._inject: Dict[str, Callable[[Fault, OutFrame], Optional[List[OutFrame]]]] = {
            DROP: lambda f, frame: [],
            DUPLICATE: lambda f, frame: [frame, frame],
            SWAP: self._swap,
            GAP: self._gap,
            CLOSE: lambda f, frame: [frame, OutFrame(outbox.CLOSE, {
                "code": f.code or CLOSE_CODE, "reason": f.reason})],
            ABORT: lambda f, frame: [frame, OutFrame(outbox.ABORT, {})],
            STALL: lambda f, frame: [frame, OutFrame(outbox.PAUSE, {
                "seconds": f.duration, "pings": f.pings})],
            REFUSE: self._refuse,
            MALFORMED: lambda f, frame: [frame, OutFrame(DATA, {}, raw=_truncated(frame.msg),
                                                         stamped=True)],
            UNKNOWN_TYPE: lambda f, frame: [frame, OutFrame(DATA, exchange(
                self.venue).unknown_message(f.name, frame.product))],
            BAD_SIZE: self._bad_size,
            OVERSIZED: lambda f, frame: [replace(frame, msg=_padded(frame.msg, f.size))],
            CHAIN_BREAK: self._chain_break,
        }

    async def filter(self, frame: OutFrame) -> Sequence[OutFrame]:
        """The connection's :data:`~sources.simulator.outbox.FrameFilter`."""
        if frame.kind != BOOK:
            return [frame]
        product = frame.product
        due = [t for t in self.frame_triggers
               if t.fault.product in (None, product) and t.observe(self._rng)]
        if self._skipping.get(product):
            self._skipping[product] -= 1
            self._record(product, GAP, frame.seq)
            return []
        held = self._held.pop(product, None)
        if held is not None:
            return [frame, held]
        for trigger in due:
            kind = trigger.fault.kind
            out = self._inject[kind](trigger.fault, frame)
            if out is None:
                continue
            trigger.fire()
            if kind != REFUSE:  # a refusal is logged per refused handshake
                self._record(product, kind, frame.seq)
                return out
        return [frame]

    def subscribe_error(self, product: str) -> Optional[SubscribeError]:
        due = [t for t in self._subscribe_triggers
               if t.fault.product == product and t.observe(self._rng)]
        if not due:
            return None
        fault = due[0].fault
        due[0].fire()
        self._record(product, ERROR, None)
        default = "bad_request" if self.venue == "deribit" else \
            f"Failed to subscribe: {product} is not available"
        return SubscribeError(fault.code or ERROR_CODE, fault.message or default)

    def _swap(self, fault: Fault, frame: OutFrame) -> List[OutFrame]:
        self._held[frame.product] = frame
        return []

    def _gap(self, fault: Fault, frame: OutFrame) -> List[OutFrame]:
        self._skipping[frame.product] = fault.frames - 1
        return []

    def _refuse(self, fault: Fault, frame: OutFrame) -> List[OutFrame]:
        self._plan.refuse(fault.venue, fault.duration, fault.mode)
        return [frame]

    def _bad_size(self, fault: Fault, frame: OutFrame) -> Optional[List[OutFrame]]:
        edited = _with_bad_size(self.venue, frame.msg, fault.value)
        return None if edited is None else [replace(frame, msg=edited)]

    def _chain_break(self, fault: Fault, frame: OutFrame) -> Optional[List[OutFrame]]:
        edited = exchange(self.venue).break_chain(orjson.loads(orjson.dumps(frame.msg)))
        return None if edited is None else [replace(frame, msg=edited)]

    def _record(self, product: Optional[str], kind: str, seq: Optional[int]) -> None:
        self._plan.record(FaultRecord(time.time() * 1000.0, self.venue, self.number,
                                      product, kind, seq))


class _Refusal(NamedTuple):
    venue: Optional[str]  # None: every venue
    until: float  # time.monotonic()
    mode: str


class FaultPlan:
    """Faults for one simulator server, and the log of those injected.

    ``seed`` makes random faults repeat; ``on_inject`` is called with each
    :class:`FaultRecord` as it happens (the CLI writes them to a file). The server
    calls :meth:`frame_filter`, :meth:`refusal`, :meth:`subscribe_error` and
    :meth:`rest_fault` on its event loop; :attr:`injected` may be read from any
    thread meanwhile.
    Per-connection state (counters, a held-back frame) lives as long as the plan.
    """

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int = 0,
                 on_inject: Optional[Callable[[FaultRecord], None]] = None) -> None:
        self.faults = tuple(faults)
        self.seed = seed
        self._on_inject = on_inject
        self._log: List[FaultRecord] = []
        self._lock = threading.Lock()
        self._connections: Dict[int, _ConnectionFaults] = {}
        self._refusals: List[_Refusal] = []
        self._rest = [_Trigger(f) for f in self.faults if f.kind in REST_KINDS]
        self._rest_rng = random.Random(f"{seed}/rest")

    @property
    def injected(self) -> List[FaultRecord]:
        """Every fault injected so far, in order (a copy)."""
        with self._lock:
            return list(self._log)

    def record(self, record: FaultRecord) -> None:
        with self._lock:
            self._log.append(record)
            if self._on_inject is not None:
                self._on_inject(record)

    def frame_filter(self, venue: str, number: int) -> Optional[FrameFilter]:
        """The :data:`~sources.simulator.outbox.FilterFactory`: connection
        ``number`` opened, so its fault state starts afresh."""
        conn = self._connections[number] = _ConnectionFaults(self, venue, number)
        return conn.filter if conn.frame_triggers else None

    def subscribe_error(self, venue: str, number: int, product: str) -> Optional[SubscribeError]:
        """The error to refuse a subscribe of ``product`` with, or None to allow it."""
        conn = self._connections.get(number)
        if conn is None:  # the server was not given frame_filter
            conn = self._connections[number] = _ConnectionFaults(self, venue, number)
        return conn.subscribe_error(product)

    def rest_fault(self, venue: str, path: str, snapshots: bool) -> Optional[Fault]:
        """The REST fault to apply to a request for ``path`` (below the venue's
        prefix), or None to answer it normally; ``snapshots``: the route serves
        book snapshots (only those count for ``stale_snapshot``). The record's
        ``product`` is the path."""
        due = [t for t in self._rest if t.fault.venue in (None, venue)
               and (snapshots or t.fault.kind != STALE_SNAPSHOT)
               and path.startswith(t.fault.path or "") and t.observe(self._rest_rng)]
        if not due:
            return None
        due[0].fire()
        self.record(FaultRecord(time.time() * 1000.0, venue, None, path, due[0].fault.kind, None))
        return due[0].fault

    def refuse(self, venue: Optional[str], duration: float, mode: str) -> None:
        """Refuse new connections to ``venue`` (None: all) for ``duration`` s."""
        self._refusals.append(_Refusal(venue, time.monotonic() + duration, mode))

    def refusal(self, connection: ServerConnection, venue: str) -> Optional[Response]:
        """The server's handshake check: None to accept, else the response that
        refuses (after resetting the TCP connection in ``reset`` mode, when the
        response can no longer be delivered: it only ends the handshake)."""
        now = time.monotonic()
        self._refusals = [r for r in self._refusals if r.until > now]
        refusal = next((r for r in self._refusals if r.venue in (None, venue)), None)
        if refusal is None:
            return None
        self.record(FaultRecord(time.time() * 1000.0, venue, None, None, REFUSE, None))
        if refusal.mode == "reset":
            sock = connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.transport.abort()
        return connection.respond(503, "refused by the simulator's fault plan\n")

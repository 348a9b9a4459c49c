"""What every venue home declares, and the vocabulary its parser speaks.

A venue is one :class:`Venue` record: its pure parser (raw frame bytes → events),
a per-connection :class:`Protocol` (the messages to send and what replies mean),
how its books are chained and resynchronised, its connection and message limits,
its settings, product-name syntax and operator hints, and, for venues with
authenticated channels, the fields of its API key and the redaction of the
secrets its frames carry (:mod:`sources.venues.credentials`). Transports, the
feed and the configuration read only this record, so adding an exchange is one
module plus one registry line.

Parsers validate every field where the frame is parsed. Numbers are decoded by
msgspec into typed structs with their bounds (:data:`Price`, :data:`Size`,
:data:`SeqNo`): syntax and range are checked in C, in the same pass that decodes
the frame, so validation costs nothing extra on the hot path. msgspec accepts only
plain JSON number syntax inside strings: ``" 12 "``, ``"1_00"``, ``"١٠٠"``, ``"+1"``
and ``true`` are rejected, where ``float()`` would take them. A frame the typed
decode rejects goes to the venue's slow path, which decodes it loosely (orjson)
only to say precisely what was wrong and which products and sequence number it
concerned; nothing there ever ``str()``s or ``repr()``s a decoded value (a JSON
nest 1,000 deep would raise RecursionError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import (Annotated, Any, Callable, Dict, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import msgspec
import orjson

from state.sync import ChainRule

Message = Dict[str, Any]
Raw = Union[bytes, str]

# Kinds of parsed frames.
BOOK = "book"              # carries BookEvents
HEARTBEAT = "heartbeat"    # keep-alive traffic, nothing to apply
TEST_REQUEST = "test_request"  # the server wants an answer (Deribit) or it drops us
REPLY = "reply"            # answer to one of our requests (subscriptions, results)
ERROR = "error"            # the exchange refused something we asked for
IGNORED = "ignored"        # a channel lobstream does not consume (ticker, trades...)
RECONNECT = "reconnect"    # the server announced it will close (Binance serverShutdown)
TRADES = "trades"          # carries Trade events
TICKER = "ticker"          # carries Ticker events

#: The largest price accepted: prices of real instruments are far below it, and
#: anything above would overflow mid, microprice and depth sums towards infinity.
MAX_PRICE = 1e12
#: The smallest price and trade size accepted: real ones are orders of magnitude
#: above (ticks and lots of 1e-8 at the finest), and a product of two subnormal
#: numbers (5e-324 × 0.018) underflows a trade's notional to 0.
MIN_PRICE = MIN_TRADE_SIZE = 1e-12
#: The largest size: Deribit quotes inverse contracts in USD (1e9 is huge there),
#: meme coins trade in 1e12 units; 1e15 bounds every product of size × price.
MAX_SIZE = 1e15
#: Sequence numbers and ids are non-negative integers that fit in a signed 64-bit int.
MAX_SEQ = 2**63 - 1

#: A price: finite, in [MIN_PRICE, MAX_PRICE].
Price = Annotated[float, msgspec.Meta(ge=MIN_PRICE, le=MAX_PRICE)]
#: A level size: finite, non-negative (0 deletes the level), at most MAX_SIZE.
Size = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_SIZE)]
#: A trade's size: as a level's, but a print of nothing is no trade.
TradeSize = Annotated[float, msgspec.Meta(ge=MIN_TRADE_SIZE, le=MAX_SIZE)]
#: A sequence number or id: an integer in [0, 2**63).
SeqNo = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
#: A product name as a venue writes it in frames, bounded in length. Its syntax is
#: checked by the feed the first time a name is seen (:func:`valid_product`), not per
#: frame: a pattern here cost a microsecond on every update.
ProductId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: A funding rate: a small signed fraction (|rate| <= 1 is already absurd).
Funding = Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]
#: A trade id as venues write them (numbers as strings, UUIDs), bounded.
TradeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: Exchange times in epoch milliseconds: between 2000-01-01 and 2100-01-01.
MIN_MS, MAX_MS = 946_684_800_000.0, 4_102_444_800_000.0
Millis = Annotated[float, msgspec.Meta(ge=MIN_MS, le=MAX_MS)]


def iso_ms(text: str) -> float:
    """An RFC 3339 time (``...Z``, up to nanoseconds) as epoch milliseconds, within
    [MIN_MS, MAX_MS]; raises ValueError otherwise."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"time without a zone: {safe_text(text, 40)}")
    ms = when.timestamp() * 1000.0
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"implausible time {safe_text(text, 40)}")
    return ms

class Wire(msgspec.Struct, gc=False):
    """Base of every venue's wire types. They are decoded once per frame and never
    take part in reference cycles, so the garbage collector need not track them:
    a 46,000-level snapshot then no longer triggers collections while it decodes
    (measured: 18.6 -> 13.8 ms for the BTC-USD snapshot's decode)."""


_PRODUCT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
SAMPLE_CHARS = 300


class Parsed(NamedTuple):
    """One parsed frame.

    ``seq`` is the connection-level counter where the venue has one (Coinbase
    Advanced Trade ``sequence_num``), else None. ``ref`` identifies the request an
    answer or error belongs to (Deribit JSON-RPC ``id``). ``detail`` is a short,
    safe text for errors (see :func:`safe_text`); ``code`` classifies an error
    reply for counting and hints.
    """

    kind: str
    seq: Optional[int]
    events: List[Any]
    ref: Any = None
    detail: str = ""
    code: str = ""
    #: The exchange time a frame without events carries (heartbeats, replies), in
    #: epoch ms: it moves the connection's event-time clock.
    ts: Optional[float] = None


class FrameError(Exception):
    """A frame lobstream cannot use: malformed JSON, unknown message type, a level
    with a negative or non-numeric size... ``kind`` names the class of problem for
    the counters; the message carries the reason. ``seq`` and ``products`` say what
    the broken frame was (when that much could be read), so a rejected book update
    still advances the connection counter and invalidates exactly the books it was
    about: skipping it silently would leave them wrong. ``products=None`` (see
    :data:`ANY_PRODUCT`) says the frame may have been a book message but whose
    cannot be read (not JSON, a list where the type or product should be)."""

    def __init__(self, kind: str, reason: str, seq: Optional[int] = None,
                 products: Optional[Sequence[str]] = ()) -> None:
        super().__init__(reason)
        self.kind = kind
        self.seq = seq
        self.products: Optional[List[str]] = None if products is None else list(products)


#: ``FrameError(products=ANY_PRODUCT)``: the broken frame may have changed any book.
ANY_PRODUCT = None


def loads(raw: Raw) -> Any:
    """Decode a frame loosely for the slow path, or raise FrameError("malformed")."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as ex:
        raise FrameError("malformed", f"not JSON: {ex}", products=ANY_PRODUCT) from None


def valid_seq(value: Any) -> Optional[int]:
    """``value`` if it is a sequence number lobstream accepts, else None."""
    if type(value) is int and 0 <= value <= MAX_SEQ:
        return value
    return None


def valid_product(value: Any) -> Optional[str]:
    """``value`` if it is a plausible product name (letters, digits, ``_.-``, at most
    64 characters, no separators, controls or whitespace), else None."""
    if isinstance(value, str) and _PRODUCT.match(value):
        return value
    return None


def safe_text(value: Any, limit: int = 200) -> str:
    """Text fit for one log line: strings as they are with control characters
    escaped, anything else only by its type (never ``str()`` of a decoded value)."""
    if isinstance(value, bytes):
        value = value[:limit * 2].decode("utf-8", "replace")
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    text = value[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                       else f"\\u{ord(c):04x}" for c in text)
    return text + ("..." if len(value) > limit else "")


def reason(ex: Exception) -> str:
    """A msgspec validation error as a short, safe reason."""
    return safe_text(str(ex), 160)


@dataclass(frozen=True)
class Limits:
    """A venue's documented limits, which lobstream stays within.

    ``max_connections``: concurrent connections per IP (None: not documented).
    ``connects_per_second``: how fast new connections may be opened (and retried).
    ``products_per_connection``: the default group size; ``max_products_per_connection``
    the most one connection may carry. ``messages_per_second``: control messages a
    client may send on one connection (subscribes, answers). ``channels_per_request``:
    how many channels one subscribe may carry.
    """

    max_connections: Optional[int]
    connects_per_second: float
    products_per_connection: int
    max_products_per_connection: int
    messages_per_second: float
    channels_per_request: int = 1_000
    #: REST request weight per minute per IP (Binance), of which lobstream uses half.
    rest_weight_per_minute: int = 1200


@dataclass(frozen=True)
class Setting:
    """One venue-specific configuration key: ``[venue] key`` in TOML and
    ``LOBSTREAM_<VENUE>_<KEY>`` in the environment. ``choices`` (if any) are the
    valid values; ``check`` returns an error text for a value that cannot work
    (one line, naming what to use instead), or None."""

    key: str
    default: Any
    help: str
    choices: Tuple[Any, ...] = ()
    check: Optional[Callable[[Any], Optional[str]]] = None
    #: Values that only work with the venue's API credentials (Deribit ``raw``):
    #: the configuration refuses them at start when none are given.
    needs_credentials: Tuple[Any, ...] = ()


@dataclass(frozen=True)
class CredentialField:
    """One field of a venue's API key: ``LOBSTREAM_<VENUE>_<KEY>`` in the
    environment, ``key`` in a credentials file (:mod:`dataflows.credentials`).
    ``check`` returns why a value cannot work (a text that never contains the
    value), or None."""

    key: str
    help: str
    check: Optional[Callable[[str], Optional[str]]] = None


def no_redaction(frame: Raw) -> Raw:
    """The redaction of a venue whose frames never carry a secret."""
    return frame


class Reply(NamedTuple):
    """What an answer to one of our requests means: the products it was about,
    whether it confirms a subscription whose snapshot must be the next book message
    for those products, and the messages it lets the connection send now (the
    subscriptions an authentication held back)."""

    products: List[str]
    confirms_subscribe: bool
    send: Sequence[Message] = ()


class Protocol:
    """One connection's outgoing side of a venue's protocol, and the bookkeeping
    needed to attribute replies and errors to products. Holds no I/O.

    Requests are tracked in a bounded table: a server that never answers cannot
    make it grow (the oldest entries are forgotten, and counted)."""

    #: Outstanding requests remembered per connection.
    MAX_PENDING = 1024

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings
        self.forgotten = 0

    def open(self, products: Sequence[str]) -> List[Message]:
        """Messages that start a connection carrying ``products``."""
        raise NotImplementedError

    def subscribe(self, products: Sequence[str]) -> List[Message]:
        """Messages that add ``products`` to a running connection."""
        raise NotImplementedError

    def unsubscribe(self, products: Sequence[str]) -> List[Message]:
        """Messages that stop ``products`` on a running connection."""
        raise NotImplementedError

    def resubscribe(self, product: str) -> List[Message]:
        """Messages that make the server send a fresh snapshot of ``product``."""
        return self.unsubscribe([product]) + self.subscribe([product])

    def answer_test_request(self) -> List[Message]:
        """The answer to a server's liveness probe (none by default)."""
        return []

    def reply(self, ref: Any, events: Sequence[Any] = ()) -> Reply:
        """An answer arrived for request ``ref``, carrying ``events`` (the parsed
        frame's: a Deribit access grant, or nothing)."""
        return Reply([], False)

    def refused(self, ref: Any, detail: str) -> Optional[List[str]]:
        """An error reply: the products it refuses, or None if it cannot be pinned
        on a subscription (then it is only logged)."""
        return None

    def due(self, now: float) -> List[Message]:
        """Messages the connection must send by ``now`` (epoch ms) without being
        asked: a token refresh, an authentication that went unanswered. The feed
        calls it about once a second."""
        return []

    def reset(self) -> None:
        """A new connection: requests of the old one will never be answered, and
        what it was granted is gone."""


@dataclass(frozen=True)
class Venue:
    """Everything lobstream knows about one exchange protocol; see the module doc.

    ``book_chain`` is the per-book chain rule (None when the venue has none);
    ``connection_sequence`` says whether frames carry one counter per connection
    (then a gap concerns every product on the connection). ``check_product``
    returns an error text for a name that cannot be one of this venue's products.
    ``hints`` pair a substring of an error reply with what the operator should do.
    """

    name: str
    title: str
    default_url: str
    #: The venue's REST host: instrument lists, snapshots (``rest_url`` overrides).
    rest_url: str
    parse: Callable[[Raw, float], Parsed]
    protocol: Callable[[Mapping[str, Any]], Protocol]
    limits: Limits
    default_products: Tuple[str, ...]
    check_product: Callable[[str], Optional[str]]
    book_chain: Optional[ChainRule] = None
    connection_sequence: bool = False
    settings: Tuple[Setting, ...] = ()
    hints: Tuple[Tuple[str, str], ...] = ()
    #: Whether the venue needs an answer to its test requests (Deribit).
    answers_test_requests: bool = False
    #: Books are synchronised from REST snapshots (Binance) rather than from a
    #: snapshot in the stream: ``snapshot_request(rest_url, product, settings)`` gives
    #: the request URL and its weight, ``parse_rest(url, raw, ts)`` parses the reply.
    rest_snapshots: bool = False
    snapshot_request: Optional[Callable[[str, str, Mapping[str, Any]], Tuple[str, int]]] = None
    parse_rest: Optional[Callable[[str, Raw, float], Parsed]] = None
    #: Connections are recycled before the server's own lifetime limit (seconds).
    max_lifetime: Optional[float] = None
    #: The fields of the venue's API key, if it has channels that need one; the
    #: protocol finds the key (:class:`~sources.venues.credentials.Credentials`)
    #: under :data:`~sources.venues.credentials.CREDENTIALS` in its settings.
    credentials: Tuple[CredentialField, ...] = ()
    #: Blanks out the secrets the venue's frames carry (both directions), before
    #: a frame is recorded or shown in a sample
    #: (:class:`~sources.venues.credentials.Redaction`).
    redact: Callable[[Raw], Raw] = no_redaction

    def setting(self, key: str) -> Setting:
        """The venue-specific setting called ``key``."""
        return next(s for s in self.settings if s.key == key)

    def hint(self, detail: str) -> str:
        """What to tell the operator about an error reply."""
        return next((h for needle, h in self.hints if needle in detail), "")


#: The longest product name any venue uses, with room to spare.
MAX_NAME = 64


def check_name(pattern: "re.Pattern[str]", expected: str) -> Callable[[str], Optional[str]]:
    """A product-name check from a venue's name syntax.

    Product names come from configuration files, environment variables and venue
    replies, and end up in subscribe messages, log lines and output file names, so
    a name must match its venue's syntax exactly: nothing with ``/``, ``..``,
    blanks or control characters, nothing longer than :data:`MAX_NAME`. The check
    returns why a name is not valid (one line naming what was expected), or None.
    """

    def check(name: Any) -> Optional[str]:
        if not isinstance(name, str):
            return f"expected a product name string, got {type(name).__name__}"
        if not name:
            return "empty product name"
        if len(name) > MAX_NAME:
            return f"product name {name[:24]!a}... has {len(name)} characters, at most {MAX_NAME}"
        if any(c.isspace() or not c.isprintable() for c in name):
            return f"product name {name!a} contains blanks or control characters"
        if "/" in name or ".." in name or "\\" in name:
            return f"product name {name!a} contains '/', '\\' or '..'"
        if pattern.fullmatch(name):
            return None
        hint = ""
        if name != name.upper() and pattern.fullmatch(name.upper()):
            hint = f" (names are upper-case: {name.upper()})"
        return f"{name!a} is not a valid product name{hint}; expected {expected}"

    return check

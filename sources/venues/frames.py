"""What a venue parser returns, and how bad input is reported.

Parsers are pure functions ``parse(msg, ts_recv) -> Parsed``: they see one decoded
frame and never touch a socket or a file, so live websockets, file replay and the
tests all go through the same code.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, List, NamedTuple, Optional, Sequence, Set, Tuple

import orjson

from state.events import BookEvent, Level

log = logging.getLogger("lobstream.input")

# Kinds of parsed frames.
BOOK = "book"              # carries BookEvents
HEARTBEAT = "heartbeat"    # keep-alive traffic, nothing to apply
TEST_REQUEST = "test_request"  # the server wants an answer (Deribit) or it drops us
REPLY = "reply"            # answer to one of our requests (subscriptions, results)
ERROR = "error"            # the exchange refused something we asked for
IGNORED = "ignored"        # a channel lobstream does not consume (ticker, trades...)

SAMPLE_CHARS = 300
_INF = float("inf")


class Parsed(NamedTuple):
    """One parsed frame.

    ``seq`` is the connection-level counter where the venue has one (Coinbase
    Advanced Trade ``sequence_num``), else None. ``ref`` identifies the request an
    answer or error belongs to (Deribit JSON-RPC ``id``). ``detail`` is a short
    human-readable text for errors.
    """

    kind: str
    seq: Optional[int]
    events: List[BookEvent]
    ref: Any = None
    detail: str = ""


class FrameError(Exception):
    """A frame lobstream cannot use: malformed JSON, unknown message type, a level
    with a negative or non-numeric size... ``kind`` names the class of problem for
    the counters; the message carries the reason. ``seq`` and ``products`` say what
    the broken frame was (when that much could be read), so a rejected book update
    still advances the connection counter and invalidates exactly the books it was
    about: skipping it silently would leave them wrong."""

    def __init__(self, kind: str, reason: str, seq: Optional[int] = None,
                 products: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.kind = kind
        self.seq = seq
        self.products = list(products)


def decode(raw: Any) -> Any:
    """Decode a raw frame (``bytes``/``str``) to JSON, or raise FrameError."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as ex:
        raise FrameError("malformed", f"not JSON: {ex}") from None


def levels(entries: Any, price_key: Any, size_key: Any) -> List[Level]:
    """Turn ``entries`` into ``(price, size)`` floats, rejecting what would corrupt a book.

    A negative, NaN, infinite or non-numeric value means the frame is broken, and
    applying half of it would leave a book that silently disagrees with the
    exchange, so the whole frame is rejected instead.
    """
    out: List[Level] = []
    append = out.append
    try:
        for e in entries:
            p = float(e[price_key])
            s = float(e[size_key])
            if not (s >= 0.0 and p >= 0.0) or s == _INF or p == _INF:
                raise FrameError("bad_level", f"invalid level price={e[price_key]!r} size={e[size_key]!r}")
            append((p, s))
    except (TypeError, ValueError, KeyError, IndexError) as ex:
        raise FrameError("bad_level", f"unreadable level: {ex}") from None
    return out


class BadInput:
    """Counts rejected input per (venue, kind) and logs each kind once, with a sample.

    A feed that sends thousands of broken frames must not flood the log, but the
    first one of each kind is exactly what an operator needs to see.
    """

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._logged: Set[Tuple[str, str]] = set()

    def report(self, venue: str, kind: str, reason: str, sample: Any) -> None:
        key = (venue, kind)
        self.counts[key] += 1
        if key not in self._logged:
            self._logged.add(key)
            text = sample if isinstance(sample, str) else _sample_text(sample)
            log.warning("%s: skipped %s frame (%s); sample: %s (further %s frames are "
                        "counted, not logged)", venue, kind, reason,
                        text[:SAMPLE_CHARS], kind)


def _sample_text(sample: Any) -> str:
    if isinstance(sample, bytes):
        return sample[:SAMPLE_CHARS].decode("utf-8", "replace")
    try:
        return orjson.dumps(sample)[:SAMPLE_CHARS].decode("utf-8", "replace")
    except TypeError:
        return repr(sample)[:SAMPLE_CHARS]

"""Exchange time as the simulator sends it: recorded times moved by one offset per venue.

A recording made months ago would otherwise be served with exchange times months
in the past, while the times the simulator makes up itself (a resubscribe
snapshot's, a heartbeat's) would be today's: one product's ``ts_exchange`` would
jump back and forth by months. So every exchange time a venue's server sends,
recorded or made up, goes through that venue's :class:`ExchangeClock`:

* ``retime="now"``: recorded time + ``offset_ms``, fixed when the server starts so
  that the venue's first recorded book frame maps to the server's start. The
  offset is whole seconds, so a shifted RFC 3339 text keeps its recorded digits.
* ``retime="none"``: offset 0, recorded times everywhere.

Epoch 0 is a placeholder ("no time"), not a time, and stays 0.
"""

from __future__ import annotations

import calendar
import re
import time
from functools import lru_cache
from typing import Any, Optional

RETIME_MODES = ("now", "none")

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z")


def offset_ms(recorded_start_ms: Optional[float], server_start_ms: float, retime: str) -> int:
    """The offset mapping ``recorded_start_ms`` to ``server_start_ms`` (whole seconds;
    0 with ``retime="none"`` or nothing recorded)."""
    if retime == "none" or recorded_start_ms is None:
        return 0
    return round((server_start_ms - recorded_start_ms) / 1000.0) * 1000


def format_rfc3339(t_ns: int, digits: int) -> str:
    """``2023-02-09T20:32:50.714964855Z`` with ``digits`` fraction digits (0-9):
    feeds print nanoseconds, which ``datetime`` cannot hold."""
    secs, ns = divmod(t_ns, 1_000_000_000)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{head}.{ns:09d}"[:len(head) + 1 + digits].rstrip(".") + "Z"


def with_nanoseconds(text: Any) -> Optional[str]:
    """An RFC 3339 UTC text padded to nine fraction digits (Coinbase envelope
    style), or None if it is not one or is the epoch-0 placeholder."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None or match.group(1) == "1970-01-01T00:00:00":
        return None
    fraction = (match.group(2) or ".")[1:]
    return f"{match.group(1)}.{fraction[:9]:0<9}Z"


@lru_cache(maxsize=65536)
def _shift_text(text: str, offset_s: int) -> str:
    match = _RFC3339.fullmatch(text)
    if match is None:
        return text  # not a time we can read: passed on as recorded
    secs = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    if secs == 0:
        return text
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs + offset_s)) + text[19:]


class ExchangeClock:
    """Moves one venue's recorded exchange times by :attr:`offset_ms`."""

    __slots__ = ("offset_ms",)

    def __init__(self, offset_ms: int = 0) -> None:
        if offset_ms % 1000:
            raise ValueError("the exchange clock offset must be whole seconds")
        self.offset_ms = offset_ms

    @property
    def shifted(self) -> bool:
        return self.offset_ms != 0

    def ms(self, value: Any) -> Any:
        """An epoch-ms number, moved (ints stay ints); anything else unchanged."""
        if not self.offset_ms or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or value == 0:
            return value
        return value + self.offset_ms

    def rfc3339(self, text: Any) -> Any:
        """An RFC 3339 UTC text (``...Z``), moved with its digits kept."""
        if not self.offset_ms or not isinstance(text, str):
            return text
        return _shift_text(text, self.offset_ms // 1000)

    def text(self, recorded_ms: float, digits: int) -> str:
        """The moved time of ``recorded_ms`` as RFC 3339 with ``digits`` fraction digits."""
        return format_rfc3339(round((recorded_ms + self.offset_ms) * 1_000_000), digits)

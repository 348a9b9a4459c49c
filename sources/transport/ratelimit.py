"""Request-weight budgets per host: how much may be sent now, and when the rest may.

Pure state with an explicit clock, so the REST client and the tests share it and a
test can step time instead of sleeping. Venues count differently (Binance: weight
per IP per minute, each endpoint with its own weight; Coinbase and Deribit:
requests per second), and all of them fit "``limit`` units per ``window``
seconds" with the caller naming each request's weight.

The local count is a sliding window (no ``window`` seconds ever hold more than
``limit``), which also keeps under a venue's fixed per-minute window. A venue's
own count (Binance ``X-MBX-USED-WEIGHT-1M``, which includes other processes on the
same IP) can only tighten it, until the venue's window rolls over.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Deque, Optional, Tuple


@dataclass(frozen=True)
class RateLimit:
    """``limit`` units of request weight per ``window`` seconds. ``used_header``
    names the response header carrying the venue's own count for its current
    fixed window of the same length (None where the venue sends none)."""

    limit: int
    window: float
    used_header: Optional[str] = None


class WeightBudget:
    """Weight spent on one host within the last window, and the wait for more.

    Memory is bounded: at most ``limit`` entries (each spend is >= 1), as older ones
    leave the window.
    """

    def __init__(self, rate: RateLimit) -> None:
        if rate.limit < 1 or not 0.0 < rate.window < math.inf:
            raise ValueError(f"rate limit {rate.limit} per {rate.window} s: expected a "
                             "limit >= 1 and a positive window")
        self.rate = rate
        self._spent: Deque[Tuple[float, int]] = deque()
        self._local = 0
        #: The venue's last reported count, the weight spent since, and when the
        #: venue's window (and so that report) ends, on the monotonic clock.
        self._reported = 0
        self._since_report = 0
        self._report_until = -math.inf

    def used(self, now: float) -> int:
        """Weight counted against the budget at monotonic time ``now``."""
        self._expire(now)
        if now < self._report_until:
            return max(self._local, self._reported + self._since_report)
        return self._local

    def wait(self, weight: int, now: float) -> float:
        """Seconds from ``now`` until ``weight`` fits (0.0: it fits now).

        Raises ValueError for a weight that can never fit (above the limit).
        """
        if not 1 <= weight <= self.rate.limit:
            raise ValueError(f"request weight {weight} is outside 1..{self.rate.limit}, "
                             f"the budget per {self.rate.window:g} s")
        room = self.rate.limit - weight
        if self.used(now) <= room:
            return 0.0
        # When the local entries alone would let it in...
        local, at = self._local, now
        for ts, w in self._spent:
            if local <= room:
                break
            local -= w
            at = ts + self.rate.window
        # ...and when the venue's report stops counting, if it still says no.
        if now < self._report_until and self._reported + self._since_report > room:
            at = max(at, self._report_until)
        return max(0.0, at - now)

    def spend(self, weight: int, now: float) -> None:
        """Count ``weight`` as sent at ``now`` (call right after ``wait`` said 0)."""
        self._expire(now)
        self._spent.append((now, weight))
        self._local += weight
        if now < self._report_until:
            self._since_report += weight

    def observe(self, used: int, now: float, wall: float) -> None:
        """The venue reports ``used`` weight in its current window, which rolls over
        at the next multiple of ``window`` seconds of wall-clock time ``wall``."""
        self._expire(now)
        self._reported = used
        self._since_report = 0
        self._report_until = now + (self.rate.window - wall % self.rate.window)

    def _expire(self, now: float) -> None:
        # ``ts + window``, exactly as ``wait`` computes it, so that ``wait`` saying 0
        # and the entry having left the window agree to the last bit.
        window = self.rate.window
        while self._spent and self._spent[0][0] + window <= now:
            self._local -= self._spent.popleft()[1]

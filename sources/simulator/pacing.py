"""When each book frame of a connection may be sent.

Three modes, chosen per server:

* ``speed == 0``: as fast as the client reads (websocket backpressure is the only
  brake), for throughput tests.
* ``speed > 0``: the recorded spacing, divided by ``speed``. Time zero is the
  venue's first recorded book frame, mapped to the moment the connection first
  subscribed, so every product keeps its place relative to the others.
* ``rate``: a fixed number of book frames per second per connection, ignoring the
  recording's clock, so latency benchmarks can set the load precisely.
"""

from __future__ import annotations

from typing import Callable, Optional


class Pacer:
    """Turns a recorded timestamp into a due time on the event loop's clock."""

    def __init__(self, clock: Callable[[], float], *, speed: float,
                 rate: Optional[float], origin_ts: Optional[float]) -> None:
        self._clock = clock
        self._speed = speed
        self._rate = rate
        self._origin_ts = origin_ts
        self._start: Optional[float] = None
        self._sent = 0
        #: Every frame is due at once (no book data means no recorded clock).
        self.unpaced = rate is None and (speed == 0 or origin_ts is None)

    def delay(self, recorded_ts: float) -> float:
        """Seconds to wait before sending a frame recorded at ``recorded_ts``
        (epoch ms); 0 when it is due. The first call starts the connection's clock."""
        now = self._clock()
        if self._start is None:
            self._start = now
        if self._rate is not None:
            due = self._start + self._sent / self._rate
        elif self.unpaced:
            return 0.0
        else:
            assert self._origin_ts is not None
            due = self._start + (recorded_ts - self._origin_ts) / 1000.0 / self._speed
        return max(0.0, due - now)

    def sent(self) -> None:
        """Count one paced frame as sent (the ``rate`` mode's clock)."""
        self._sent += 1

"""Rate limits lobstream keeps on its own side: new connections and control messages.

Exchanges punish clients that exceed their limits (Deribit ends the session with
10028, Binance bans the IP, Coinbase disconnects), so pacing is done before
sending, never as a reaction to the error. A :class:`TokenBucket` allows a short
burst and then a steady rate; :meth:`TokenBucket.wait` is awaited on the socket
thread's event loop before each new connection or control message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def delay(self) -> float:
        """Take a token; return how long to wait before using it (0 if available)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def wait(self) -> None:
        """Wait until a token is available, and take it."""
        pause = self.delay()
        if pause > 0:
            await asyncio.sleep(pause)

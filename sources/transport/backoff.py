"""Reconnect delays: exponential, jittered, capped, and forgiven after a stable spell."""

from __future__ import annotations

import random
from typing import Optional


class Backoff:
    """Delays before successive reconnect attempts.

    The first retry comes quickly (a blip should cost well under a second), each
    failure doubles the ceiling up to ``cap``, and jitter (a uniform draw in the
    upper half of the ceiling) keeps many clients from reconnecting in lockstep. A
    connection that stayed up for ``stable_after`` seconds resets the sequence.
    """

    def __init__(self, first: float = 0.25, cap: float = 30.0, stable_after: float = 60.0,
                 rng: Optional[random.Random] = None) -> None:
        self.first = first
        self.cap = cap
        self.stable_after = stable_after
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, connected_for: float) -> float:
        """Seconds to wait before the next attempt; ``connected_for`` is how long the
        connection that just ended was up (0 if it never came up)."""
        if connected_for >= self.stable_after:
            self.failures = 0
        ceiling = min(self.cap, self.first * (2 ** self.failures))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rng.random())

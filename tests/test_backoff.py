"""Reconnect delays: quick first retry, doubling, capped, jittered, reset when stable."""

import random

from sources.transport.backoff import Backoff


def test_delays_double_up_to_the_cap_with_jitter():
    b = Backoff(first=0.25, cap=30.0, stable_after=60.0, rng=random.Random(7))
    delays = [b.next_delay(0.0) for _ in range(12)]
    ceilings = [min(30.0, 0.25 * 2 ** i) for i in range(12)]
    for d, c in zip(delays, ceilings):
        assert c / 2 <= d <= c  # jitter stays in the upper half of the ceiling
    assert delays[0] < 0.5  # a blip costs well under a second
    assert max(delays) <= 30.0 and delays[-1] >= 15.0


def test_jitter_spreads_clients_apart():
    firsts = {round(Backoff(rng=random.Random(seed)).next_delay(0.0), 6) for seed in range(20)}
    assert len(firsts) == 20


def test_stable_connection_resets_the_sequence():
    b = Backoff(first=0.25, cap=30.0, stable_after=60.0, rng=random.Random(1))
    for _ in range(8):
        b.next_delay(1.0)  # flapping: each connection lived one second
    assert b.next_delay(1.0) >= 15.0
    assert b.next_delay(120.0) <= 0.25  # up for two minutes: back to a quick retry

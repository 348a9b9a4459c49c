"""Shared pytest options: ``--soak-seconds`` (or ``LOBSTREAM_SOAK_SECONDS``) sets how
long ``tests/test_soak.py`` runs, 60 s by default; its time limit follows.
``--fuzz-frames`` (``LOBSTREAM_FUZZ_FRAMES``, 100,000 by default) and ``--fuzz-seed``
(``LOBSTREAM_FUZZ_SEED``; ``random`` draws one) drive ``tests/test_fuzz.py``; its
time limit follows the frame count."""

from __future__ import annotations

import os
import random
from typing import List

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak-seconds", type=float, default=None,
                     help="how long the soak test runs (default: $LOBSTREAM_SOAK_SECONDS or 60)")
    parser.addoption("--fuzz-frames", type=int, default=None,
                     help="frames the fuzz test tries (default: $LOBSTREAM_FUZZ_FRAMES or 100000)")
    parser.addoption("--fuzz-seed", default=None,
                     help="the fuzz test's seed, or 'random' (default: $LOBSTREAM_FUZZ_SEED or "
                          "a fixed seed)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: the soak test (time limit from --soak-seconds)")
    config.addinivalue_line("markers", "fuzz: the fuzz test (time limit from --fuzz-frames)")


def _soak_seconds(config: pytest.Config) -> float:
    option = config.getoption("--soak-seconds")
    return float(option if option is not None else os.environ.get("LOBSTREAM_SOAK_SECONDS", 60))


def _fuzz_frames(config: pytest.Config) -> int:
    option = config.getoption("--fuzz-frames")
    return int(option if option is not None else os.environ.get("LOBSTREAM_FUZZ_FRAMES", 100_000))


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    limit = 2 * _soak_seconds(config) + 120
    # The fuzz runs at several thousand frames/s; the limit allows for 1,000/s.
    fuzz_limit = _fuzz_frames(config) / 1000 + 120
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(pytest.mark.timeout(limit))
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(pytest.mark.timeout(fuzz_limit))


@pytest.fixture
def soak_seconds(request: pytest.FixtureRequest) -> float:
    return _soak_seconds(request.config)


@pytest.fixture
def fuzz_frames(request: pytest.FixtureRequest) -> int:
    return _fuzz_frames(request.config)


@pytest.fixture
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    option = request.config.getoption("--fuzz-seed")
    text = str(option if option is not None else os.environ.get("LOBSTREAM_FUZZ_SEED", "7"))
    return random.SystemRandom().randrange(2**32) if text == "random" else int(text)

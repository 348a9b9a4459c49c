"""Shared pytest options: ``--soak-seconds`` (or ``LOBSTREAM_SOAK_SECONDS``) sets how
long ``tests/test_soak.py`` runs, 60 s by default; its time limit follows."""

from __future__ import annotations

import os
from typing import List

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak-seconds", type=float, default=None,
                     help="how long the soak test runs (default: $LOBSTREAM_SOAK_SECONDS or 60)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: the soak test (time limit from --soak-seconds)")


def _soak_seconds(config: pytest.Config) -> float:
    option = config.getoption("--soak-seconds")
    return float(option if option is not None else os.environ.get("LOBSTREAM_SOAK_SECONDS", 60))


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    limit = 2 * _soak_seconds(config) + 120
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(pytest.mark.timeout(limit))


@pytest.fixture
def soak_seconds(request: pytest.FixtureRequest) -> float:
    return _soak_seconds(request.config)

"""The simulated venues, one registry line each (their contract: :mod:`.base`).

Module names end in ``_server`` so they are never mistaken for the client side
(``sources/venues/``), which this package must not import.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from sources.simulator.exchanges import (binance_server, coinbase_exchange_server,
                                         coinbase_server, deribit_server)
from sources.simulator.exchanges.base import SimulatedExchange

#: In recognition order: a capture frame goes to the venue its capture names if
#: that venue's ``index`` claims it, else to the first one that does (Coinbase
#: Exchange's test is the loosest, so it comes last).
EXCHANGES: Tuple[SimulatedExchange, ...] = (
    coinbase_server.EXCHANGE,
    deribit_server.EXCHANGE,
    *binance_server.EXCHANGES,
    coinbase_exchange_server.EXCHANGE,
)

BY_VENUE: Dict[str, SimulatedExchange] = {e.venue: e for e in EXCHANGES}
VENUES = tuple(BY_VENUE)


def exchange(venue: str) -> SimulatedExchange:
    """The venue called ``venue``; raises ValueError naming the valid ones."""
    found = BY_VENUE.get(venue)
    if found is None:
        raise ValueError(f"unknown venue {venue!r}; valid venues: {', '.join(VENUES)}")
    return found


def by_ws_path(path: str) -> Optional[SimulatedExchange]:
    return next((e for e in EXCHANGES if path in e.ws_paths
                 or any(path.startswith(prefix + "/") for prefix in e.ws_prefixes)), None)


def by_rest_path(path: str) -> Optional[Tuple[SimulatedExchange, str]]:
    """The venue answering a REST path, and the path in the venue's own terms
    (below its prefix; an alias is the venue's own path already)."""
    for e in EXCHANGES:
        if path.startswith(e.rest_prefix + "/"):
            return e, path[len(e.rest_prefix):]
        if any(path.startswith(alias) for alias in e.rest_aliases):
            return e, path
    return None

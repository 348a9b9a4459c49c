"""The venues lobstream can read: one registry line per venue home.

Each module here is one exchange's home (wire types, pure parser, protocol,
limits, settings, hints; see :mod:`sources.venues.base`). Transports, the feed,
the converter and the configuration only ever look venues up here.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

from sources.venues import binance, coinbase, coinbase_exchange, deribit
from sources.venues.base import Raw, Venue, no_redaction

VENUES: Dict[str, Venue] = {spec.name: spec for spec in (
    coinbase.VENUE_SPEC,
    deribit.VENUE_SPEC,
    coinbase_exchange.VENUE_SPEC,
    binance.BINANCE,
    binance.BINANCE_USDM,
    binance.BINANCE_COINM,
)}

VENUE_NAMES: Tuple[str, ...] = tuple(VENUES)


def get_venue(name: str) -> Venue:
    """The venue called ``name``; raises ValueError naming the valid choices."""
    try:
        return VENUES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown venue {name!r}; valid choices: {', '.join(VENUE_NAMES)}") \
            from None


def redaction(name: str) -> Callable[[Raw], Raw]:
    """How venue ``name`` blanks secrets out of its frames (nothing to do for a
    name that is no venue's: it has no secrets either)."""
    venue = VENUES.get(name)
    return venue.redact if venue is not None else no_redaction

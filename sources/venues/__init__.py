"""The venues lobstream can read, as one record each, so transports stay generic."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, List, Optional

from sources.venues import coinbase, coinbase_exchange, deribit
from sources.venues.frames import Parsed

Message = Dict[str, Any]


@dataclass(frozen=True)
class Venue:
    """Everything a transport needs to know about one exchange protocol."""

    name: str
    default_url: str
    parse: Callable[[Any, float], Parsed]
    subscribe: Callable[[List[str]], List[Message]]
    resubscribe: Callable[[str], List[Message]]
    #: Builds the answer to a server's ``test_request``; None where there is none.
    answer_test_request: Optional[Callable[[], Message]] = None


def get_venue(name: str, *, deribit_interval: str = deribit.DEFAULT_INTERVAL,
              coinbase_exchange_channel: str = coinbase_exchange.DEFAULT_CHANNEL) -> Venue:
    """The venue called ``name``; raises ValueError naming the valid choices."""
    if name == coinbase.VENUE:
        return Venue(coinbase.VENUE, coinbase.DEFAULT_URL, coinbase.parse,
                     coinbase.subscribe, coinbase.resubscribe)
    if name == coinbase_exchange.VENUE:
        return Venue(coinbase_exchange.VENUE, coinbase_exchange.DEFAULT_URL,
                     coinbase_exchange.parse,
                     partial(coinbase_exchange.subscribe, channel=coinbase_exchange_channel),
                     partial(coinbase_exchange.resubscribe, channel=coinbase_exchange_channel))
    if name == deribit.VENUE:
        return Venue(deribit.VENUE, deribit.DEFAULT_URL, deribit.parse,
                     partial(deribit.subscribe, interval=deribit_interval),
                     partial(deribit.resubscribe, interval=deribit_interval),
                     deribit.answer_test_request)
    raise ValueError(f"unknown venue {name!r}; valid choices: {', '.join(VENUE_NAMES)}")


VENUE_NAMES = (coinbase.VENUE, deribit.VENUE, coinbase_exchange.VENUE)

"""Fetch a venue's instrument list over REST and parse it.

The I/O half of :mod:`sources.instruments.venues`: it asks the venue's table which
requests to make, sends them through a :class:`~sources.transport.rest.RestClient`
(with the table's rate limit for that host unless the client already has one),
parses each body and logs skipped entries once per kind. Deribit takes one request
per currency; they share the host's budget of one request per second, so the
default three take about two seconds.
"""

from __future__ import annotations

import asyncio
from typing import Dict, List, NamedTuple, Optional, Sequence

from sources.instruments.fields import BodyError, SkipLog, Skipped
from sources.instruments.model import Instrument
from sources.instruments.venues import api_for
from sources.transport.rest import HostLimits, RestClient, RestError


class Fetched(NamedTuple):
    """A venue's instruments (each symbol once) and the entries skipped."""

    instruments: List[Instrument]
    skipped: Skipped


async def fetch_instruments(venue: str, rest_base_url: Optional[str] = None, *,
                            client: Optional[RestClient] = None,
                            names: Sequence[str] = (),
                            currencies: Optional[Sequence[str]] = None,
                            skip_log: Optional[SkipLog] = None) -> Fetched:
    """The instruments ``venue`` lists at ``rest_base_url`` (default: the venue's).

    ``names`` are the configured product names (Deribit: they add the currencies
    they are listed under); ``currencies`` replaces Deribit's default currencies.
    ``skip_log`` remembers which skip kinds were logged (pass one that lives as long
    as the process when re-fetching periodically). Raises :class:`RestError`, also
    (kind ``bad_body``) for a reply that is not an instrument list, and ValueError
    for an unknown venue or bad currency.
    """
    api = api_for(venue)
    queries = api.queries(names, currencies)
    url = (rest_base_url or api.base_url).rstrip("/") + api.path
    own = client is None
    rest = RestClient() if client is None else client
    rest.configure(url, HostLimits(rate=api.rate))
    try:
        results = await asyncio.gather(*(rest.get(url, params=q, weight=api.weight)
                                         for q in queries), return_exceptions=True)
    finally:
        if own:
            await rest.close()
    by_symbol: Dict[str, Instrument] = {}
    skipped = Skipped()
    for query, result in zip(queries, results):
        if isinstance(result, BaseException):
            raise result
        try:
            instruments, part = api.parse(result.body)
        except BodyError as ex:
            raise RestError("bad_body", f"{url}?{'&'.join(f'{k}={v}' for k, v in query.items())}",
                            str(ex)) from None
        skipped.merge(part)
        for inst in instruments:
            by_symbol.setdefault(inst.symbol, inst)
    (skip_log or SkipLog()).report(venue, skipped)
    return Fetched(list(by_symbol.values()), skipped)


def fetch_instruments_blocking(venue: str, rest_base_url: Optional[str] = None, *,
                               timeout: float = 120.0, names: Sequence[str] = (),
                               currencies: Optional[Sequence[str]] = None,
                               skip_log: Optional[SkipLog] = None) -> Fetched:
    """:func:`fetch_instruments` for start-up code outside any event loop, bounded
    by ``timeout`` seconds overall (RestError ``timeout`` beyond)."""
    async def bounded() -> Fetched:
        async with asyncio.timeout(timeout):
            return await fetch_instruments(venue, rest_base_url, names=names,
                                           currencies=currencies, skip_log=skip_log)
    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise RestError("timeout", rest_base_url or api_for(venue).base_url,
                        f"{venue} instrument list not fetched within {timeout:g} s") from None

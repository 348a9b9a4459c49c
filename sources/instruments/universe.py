"""Which products a venue is followed for: names and rules, resolved against its listing.

At start the venue's instrument list is fetched once: configured names are
checked against it (a typo fails with close matches before any socket opens) and
selection rules pick their instruments. While the flow runs, every worker
re-resolves on its own every ``refresh`` seconds: new listings a rule selects are
subscribed, and instruments the venue stopped listing (expired options, delisted
pairs) are dropped. Each worker makes the same decision from the same listing, and
a product that joins a running flow lives on its plain key's worker
(:func:`~sources.runtime.placement.home_worker`), so no coordination is needed and
no book ever moves.
"""

from __future__ import annotations

import logging
import time
from typing import List, NamedTuple, Optional, Sequence, Set, Tuple

from sources.instruments.fetch import fetch_instruments, fetch_instruments_blocking
from sources.instruments.fields import SkipLog
from sources.instruments.model import Instrument
from sources.instruments.select import Rule, resolve
from sources.transport.rest import RestClient, RestError

log = logging.getLogger("lobstream.instruments")

#: ``instruments`` setting: fetch and check at start, failing without the list...
REQUIRE = "require"
#: ...fetch and check, but go on with the names as given if the list cannot be had...
CHECK = "check"
#: ...or do not fetch at all (names are only checked for syntax; no rules).
OFF = "off"
MODES = (CHECK, REQUIRE, OFF)


class VenueUniverse(NamedTuple):
    """What a venue is followed for: configured names, rules, where its listing is,
    and how often to re-resolve (seconds; 0 never)."""

    venue: str
    names: Tuple[str, ...]
    rules: Tuple[Rule, ...]
    rest_url: str
    refresh: float
    mode: str


def resolve_at_start(u: VenueUniverse, now_ms: Optional[int] = None) -> List[Instrument]:
    """The venue's instruments to follow now (empty list: the names as configured,
    when the listing could not be fetched in ``check`` mode). Raises ValueError with
    one line for an unknown name (close matches) or an unreachable listing that the
    configuration needs."""
    if u.mode == OFF:
        return []
    try:
        fetched = fetch_instruments_blocking(u.venue, u.rest_url, names=u.names)
    except RestError as ex:
        if u.mode == REQUIRE or u.rules:
            raise ValueError(f"{u.venue}: cannot fetch the instrument list ({ex}); "
                             "rules need it (set instruments = \"off\" and list names)") \
                from None
        log.warning("%s: instrument list unavailable (%s); following the configured names "
                    "unchecked", u.venue, ex)
        return []
    now = int(time.time() * 1000) if now_ms is None else now_ms
    chosen = resolve(u.names, u.rules, fetched.instruments, now, venue=u.venue, strict=True)
    if not chosen:
        raise ValueError(f"{u.venue}: the names and rules select no instrument that is "
                         "listed, active and not expired")
    return chosen


class Refresher:
    """Re-resolves one venue's products while the flow runs (on the socket thread)."""

    def __init__(self, universe: VenueUniverse, current: Sequence[str]) -> None:
        self.universe = universe
        self.current: Set[str] = set(current)
        self.skip_log = SkipLog()
        self.failures = 0

    async def changes(self, client: RestClient) -> Tuple[List[str], List[str]]:
        """``(added, removed)`` product names since the last resolution; nothing on
        a failed fetch (logged; the current set stays)."""
        u = self.universe
        try:
            fetched = await fetch_instruments(u.venue, u.rest_url, client=client, names=u.names,
                                              skip_log=self.skip_log)
        except (RestError, ValueError) as ex:
            self.failures += 1
            log.warning("%s: instrument list refresh failed (%s); keeping %d products",
                        u.venue, ex, len(self.current))
            return [], []
        now = int(time.time() * 1000)
        chosen = {i.symbol for i in resolve(u.names, u.rules, fetched.instruments, now,
                                            venue=u.venue, strict=False)}
        added = sorted(chosen - self.current)
        removed = sorted(self.current - chosen)
        self.current = chosen
        if added or removed:
            log.info("%s: listing changed: +%d %s, -%d %s", u.venue, len(added),
                     ", ".join(added[:5]), len(removed), ", ".join(removed[:5]))
        return added, removed

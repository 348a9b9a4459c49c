"""The instruments a simulated venue lists and serves, and when.

A venue's list comes from real REST replies (``recordings/reference/``), with
their times moved like the rest of the venue's exchange times: each list by the
offset between its own recording time and the server's start (see
:mod:`sources.simulator.clock`). On top of it:

* **Recorded instruments** missing from the list (a book recorded months before
  the list) are added, built by the venue from the name where it can
  (:meth:`~sources.simulator.exchanges.base.SimulatedExchange.build_record`).
* **Cloned books** (``clone_books``): every listed instrument without a recorded
  book is served with the recorded book of a recorded instrument of the same
  venue, chosen deterministically (same family first: the venue says what a
  family is, e.g. Deribit's currency and kind), under its own name. A test can
  then follow hundreds of instruments selected by rule, on real recorded data.
* **A schedule** (:class:`Listing`): an instrument appears only after some
  seconds of server time, or is delisted after some; until it appears, or once
  it is gone, subscribing to it is refused as for an unknown instrument.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, Dict, Hashable, Iterable, List, NamedTuple,
                    Optional, Sequence, Tuple)

import orjson

from sources.simulator.clock import ExchangeClock, offset_ms
from sources.simulator.recording import Recording

if TYPE_CHECKING:
    from sources.simulator.exchanges.base import SimulatedExchange

Record = Dict[str, Any]


@dataclass(frozen=True)
class Listing:
    """When one instrument is on a venue's list, in seconds since the server
    started: from ``listed_after`` until ``delisted_after`` (None: for good)."""

    venue: str
    name: str
    listed_after: float = 0.0
    delisted_after: Optional[float] = None

    def __post_init__(self) -> None:
        if self.listed_after < 0 or (self.delisted_after is not None
                                     and self.delisted_after <= self.listed_after):
            raise ValueError(f"listing {self.venue}:{self.name}: need 0 <= list < delist")

    @classmethod
    def parse(cls, spec: str) -> "Listing":
        """``VENUE:NAME[:list=S][,delist=S]``, e.g. ``deribit:BTC-30JUL21-40000-C:list=10``."""
        venue, _, rest = spec.partition(":")
        name, _, params = rest.partition(":")
        times: Dict[str, Optional[float]] = {"list": 0.0, "delist": None}
        for item in filter(None, params.split(",")):
            key, sep, text = item.partition("=")
            if not sep or key.strip() not in times:
                raise ValueError(f"listing {spec!r}: expected list=S or delist=S, got {item!r}")
            try:
                times[key.strip()] = float(text)
            except ValueError:
                raise ValueError(f"listing {spec!r}: {text!r} is not a number of seconds") from None
        if not venue or not name:
            raise ValueError(f"listing {spec!r}: expected VENUE:NAME[:list=S][,delist=S]")
        return cls(venue.strip(), name.strip(), times["list"] or 0.0, times["delist"])


class ReferenceList(NamedTuple):
    """One recorded REST reply's instruments. ``group`` says which list an
    instrument is on where a venue has several (Deribit: one per currency)."""

    group: str
    recorded_ms: float
    records: List[Record]


@dataclass(frozen=True)
class Instrument:
    """One instrument as served: its REST record (times moved; None: the venue
    lists it nowhere), the recorded book it is served from (None: not
    subscribable) and its schedule."""

    name: str
    record: Optional[Record]
    group: str = ""
    source: Optional[str] = None
    listed_after: float = 0.0
    delisted_after: Optional[float] = None

    def listed(self, now: float) -> bool:
        return self.listed_after <= now and not self.delisted(now)

    def delisted(self, now: float) -> bool:
        return self.delisted_after is not None and now >= self.delisted_after


class Universe:
    """One venue's instruments, in list order; ``now`` is server seconds."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_name = {i.name: i for i in instruments}
        self.has_delistings = any(i.delisted_after is not None for i in self._by_name.values())

    def get(self, name: str) -> Optional[Instrument]:
        return self._by_name.get(name)

    def source(self, name: str, now: float) -> Optional[str]:
        """The recorded book served as ``name`` now; None if it cannot be subscribed."""
        instrument = self._by_name.get(name)
        return instrument.source if instrument is not None and instrument.listed(now) else None

    def delisted(self, name: str, now: float) -> bool:
        instrument = self._by_name.get(name)
        return instrument is not None and instrument.delisted(now)

    def records(self, now: float, *, delisted: bool = False,
                group: Optional[str] = None) -> List[Record]:
        """The records of the listed instruments (or, with ``delisted``, of those
        delisted by now), of one ``group`` or all."""
        return [i.record for i in self._by_name.values()
                if i.record is not None and (group is None or i.group == group)
                and (i.delisted(now) if delisted else i.listed(now))]


@lru_cache(maxsize=32)
def _decoded(path: str, mtime_ns: int) -> Any:
    with gzip.open(path, "rb") as f:
        return orjson.loads(f.read())


def read_reference(path: Path) -> Any:
    """A bundled REST reply, decoded (shared between servers: never mutate it)."""
    return _decoded(str(path), os.stat(path).st_mtime_ns)


def pick(name: str, candidates: Sequence[str],
         family: Callable[[str], Tuple[Hashable, ...]]) -> str:
    """The recorded book to clone as ``name``: among the ``candidates`` sharing
    the most specific level of ``family(name)`` any of them shares (else among
    all), one chosen by a hash of the name, so every run picks the same one."""
    wanted = family(name)
    pool = list(candidates)
    for level, key in enumerate(wanted):
        same = [c for c in candidates if family(c)[level:level + 1] == (key,)]
        if same:
            pool = same
            break
    return pool[zlib.crc32(name.encode()) % len(pool)]


def build_universe(exchange: "SimulatedExchange", recording: Recording, *,
                   clock: ExchangeClock, retime: str, server_start_ms: float,
                   reference_dir: Optional[Path], clone_books: bool,
                   listings: Sequence[Listing]) -> Universe:
    """``exchange``'s instruments for one server run; raises ValueError for a
    listing of an instrument the venue neither lists, records nor can build."""
    venue = exchange.venue
    entries: Dict[str, Instrument] = {}
    lists = exchange.reference_lists(reference_dir) if reference_dir is not None else []
    for ref in lists:
        list_clock = ExchangeClock(offset_ms(ref.recorded_ms, server_start_ms, retime))
        for record in ref.records:
            name = exchange.record_name(record)
            if name not in entries:
                entries[name] = Instrument(name, exchange.shift_record(record, list_clock),
                                           ref.group)
    recorded = recording.products(venue)
    scheduled = {listing.name: listing for listing in listings if listing.venue == venue}
    for name in sorted(recorded | set(scheduled)):
        if name in entries:
            continue
        built = exchange.build_record(name, [(i.group, i.record) for i in entries.values()
                                             if i.record is not None], clock)
        if built is None and name not in recorded:
            raise ValueError(f"listing {venue}:{name}: {venue} lists no such instrument, "
                             "none was recorded and its name does not say what it is")
        group, record = built if built is not None else ("", None)
        entries[name] = Instrument(name, record, group)
    books = sorted(recording.channels.get(venue, {}).get(exchange.book_channel, {}))
    universe = []
    for name, instrument in entries.items():
        source = name if name in recorded else None
        if source is None and clone_books and books:
            source = pick(name, books, exchange.family)
        listing = scheduled.get(name)
        universe.append(Instrument(
            name, instrument.record, instrument.group, source,
            listing.listed_after if listing else 0.0, listing.delisted_after if listing else None))
    return Universe(universe)

"""Backfill: historical candles over REST into the store, as bars with ``source: "rest"``.

For each UTC day of the range, every candle of the day is fetched in pages of the
venue's size (:class:`~sources.candles.model.CandleApi`), through the project's
:class:`~sources.transport.rest.RestClient` (its per-host weight budget set from
the venue's declared rate, the venue's used-weight header, Retry-After on 429,
bans on 418), then the day is written as **one new version**: the day's current
files (bars built from trades, other intervals) stay, the previous backfill of the
same interval is dropped, and the candles become bars for the windows that have
no trade-built bar (those are never overwritten). A page that fails fails the day
before anything is written.

**Resumable without gaps or duplicates.** A day is written whole or not at all,
and its version's entry records the backfill (``source: "backfill <interval>"``,
``complete``). Running the same command again skips every day whose current
version holds a complete backfill of that interval, and redoes the rest, so an
interrupted run resumes at the first day it had not finished. A day still in
progress (today) is written but not marked complete, so a later run refreshes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date, timedelta
from typing import Dict, List, Optional, Tuple

import pyarrow.compute as pc

from sinks.store.layout import PartitionDay, Root, day_bounds
from sinks.store.schema import to_table
from sinks.store.writer import StoreWriter, read_files
from sources.candles.model import Candle, CandleApi, bar_record
from sources.transport.ratelimit import RateLimit
from sources.transport.rest import HostLimits, RestClient, RestError
from sources.venues import binance, coinbase, deribit

log = logging.getLogger("lobstream.backfill")

#: Venue -> its candle endpoint.
CANDLE_APIS: Dict[str, CandleApi] = {api.venue: api for api in (
    coinbase.CANDLES, binance.CANDLES, binance.CANDLES_USDM, binance.CANDLES_COINM,
    deribit.CANDLES)}


def candle_api(venue: str) -> CandleApi:
    api = CANDLE_APIS.get(venue)
    if api is None:
        raise ValueError(f"no candle endpoint for venue {venue!r}; valid choices: "
                         f"{', '.join(CANDLE_APIS)}")
    return api


def host_limits(api: CandleApi) -> HostLimits:
    weight, seconds = api.rate
    return HostLimits(rate=RateLimit(weight, seconds, api.used_header), max_concurrent=1)


async def fetch_range(client: RestClient, api: CandleApi, base_url: str, product: str,
                      start_ms: int, end_ms: int, interval_ms: int,
                      page: Optional[int] = None) -> List[Candle]:
    """Every candle starting in ``[start_ms, end_ms)``, in pages of at most ``page``
    (the venue's size by default), one request at a time, oldest first."""
    name = api.intervals[interval_ms]
    per = max(2, min(page or api.max_candles, api.max_candles))
    found: Dict[int, Candle] = {}
    t = start_ms - start_ms % interval_ms
    while t < end_ms:
        # ``per - 1`` windows, asking up to the next window's start: every window of
        # the page is inside the range whether the venue's end is inclusive or not.
        last = min(t + (per - 2) * interval_ms, end_ms - 1)
        path, params = api.request(product, t, last + interval_ms, name, per)
        reply = await client.get(base_url.rstrip("/") + path, params=params,
                                 weight=api.weight(per))
        try:
            candles = api.parse(reply.body, product)
        except ValueError as ex:
            raise RestError("bad_body", path, str(ex)) from None
        for c in candles:
            if t <= c.start <= last and c.start % interval_ms == 0:
                found[c.start] = c
        t = last - last % interval_ms + interval_ms
    return [found[s] for s in sorted(found)]


def _tag(interval_ms: int) -> str:
    return f"backfill {interval_ms // 1000}s"


def _done(writer: StoreWriter, pd: PartitionDay, tag: str) -> bool:
    ix = writer._indexer(pd)
    current = {f.name for f in ix.state.files()}
    return any(e.get("source") == tag and e.get("complete") and
               {f["name"] for f in e["files"]} <= current for e in ix.entries
               if e["op"] == "open" and e.get("version") == ix.state.current)


def write_day(writer: StoreWriter, venue: str, product: str, day: str, interval_ms: int,
              candles: List[Candle], complete: bool) -> int:
    """The day's new version: its current files, minus the previous backfill of this
    interval, plus the candles of windows without a trade-built bar; rows added."""
    pd = PartitionDay("bar", venue, product, day)
    ix = writer._indexer(pd)
    tag = _tag(interval_ms)
    files = ix.state.files()
    previous = {f["name"] for e in ix.entries if e.get("source") == tag for f in e["files"]}
    drop = [f.name for f in files if f.name in previous]
    kept = read_files(writer.root, pd, [f.name for f in files if f.name not in previous])
    built = kept.filter(pc.and_(pc.equal(kept["source"], "trades"),
                                pc.equal(kept["interval_s"], interval_ms / 1000.0)))
    taken = set(built["start"].to_pylist())
    rows = [bar_record(venue, product, interval_ms, c) for c in candles if c.start not in taken]
    table, _ = to_table("bar", rows)
    writer.supersede(pd, table, drop, source=tag, complete=complete)
    return table.num_rows


async def backfill(root: Root, venue: str, product: str, first: date, last: date,
                   interval_ms: int, base_url: Optional[str] = None, page: Optional[int] = None,
                   client: Optional[RestClient] = None) -> List[Tuple[str, int]]:
    """Backfill ``first``..``last`` (UTC dates, inclusive); ``(day, bars)`` per day
    written (days already complete are skipped)."""
    api = candle_api(venue)
    if interval_ms not in api.intervals:
        raise ValueError(f"{venue} has no {interval_ms // 1000}s candles; valid intervals: "
                         f"{', '.join(f'{i // 1000}s' for i in sorted(api.intervals))}")
    url = base_url or api.rest_url
    own = client is None
    client = client or RestClient()
    client.configure(url, host_limits(api))
    writer = StoreWriter(root, source="backfill")
    done: List[Tuple[str, int]] = []
    try:
        d = first
        while d <= last:
            day = d.isoformat()
            pd = PartitionDay("bar", venue, product, day)
            if _done(writer, pd, _tag(interval_ms)):
                log.info("backfill %s %s %s: already complete", venue, product, day)
            else:
                start, end = (int(x) for x in day_bounds(day))
                now = int(time.time() * 1000)
                candles = await fetch_range(client, api, url, product, start, min(end, now),
                                            interval_ms, page)
                done.append((day, write_day(writer, venue, product, day, interval_ms, candles,
                                            complete=end <= now - interval_ms)))
            d += timedelta(days=1)
    finally:
        if own:
            await client.close()
    return done


def backfill_days(root: Root, venue: str, product: str, first: str, last: str,
                  interval_ms: int, base_url: Optional[str] = None,
                  page: Optional[int] = None) -> List[Tuple[str, int]]:
    """:func:`backfill` from synchronous code, dates as ``YYYY-MM-DD``."""
    return asyncio.run(backfill(root, venue, product, date.fromisoformat(first),
                                date.fromisoformat(last), interval_ms, base_url, page))

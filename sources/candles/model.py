"""What a venue's candle endpoint is, and a candle as a bar record.

Each venue home declares its endpoint as one :class:`CandleApi` (path, page size,
intervals, weight, how to ask for a page and a pure parser for the reply); the
backfill reads nothing else about a venue. Parsers validate every field where the
reply is parsed (typed msgspec structs with bounds) and raise ValueError with one
line for a reply that does not fit, so one bad page fails that page, never the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional

from state.bars import BAR_FIELDS


class Candle(NamedTuple):
    """One venue candle. ``volume`` is base currency, ``quote_volume`` quote currency
    (None where the venue does not say); ``trades``, ``buy_volume`` (taker buys,
    base) and ``buy_quote_volume`` only where the venue gives them (Binance)."""

    start: int  # epoch ms
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: Optional[float] = None
    trades: Optional[int] = None
    buy_volume: Optional[float] = None
    buy_quote_volume: Optional[float] = None


@dataclass(frozen=True)
class CandleApi:
    """A venue's candle endpoint.

    ``intervals`` maps an interval in ms to the venue's own name for it.
    ``request(product, start_ms, last_ms, interval_name, limit)`` gives the path
    (below ``rest_url``) and query of one page holding the candles starting in
    ``[start_ms, last_ms]``; ``parse(body, product)`` the candles of a reply.
    ``weight(limit)`` is the request's cost in ``rate`` units; ``rate`` is
    ``(weight, seconds)`` lobstream allows itself, below the venue's limit.
    """

    venue: str
    rest_url: str
    max_candles: int
    intervals: Mapping[int, str]
    request: Callable[[str, int, int, str, int], "tuple[str, Dict[str, str]]"]
    parse: Callable[[bytes, str], List[Candle]]
    rate: "tuple[int, float]"
    weight: Callable[[int], int] = lambda limit: 1
    used_header: Optional[str] = None


def bar_record(venue: str, product: str, interval_ms: int, c: Candle) -> Dict[str, Any]:
    """A candle as a bar record (``source: "rest"``, revision 0, complete); fields
    the venue does not give are None."""
    rec: Dict[str, Any] = dict.fromkeys(BAR_FIELDS)
    sells = None if c.buy_volume is None else c.volume - c.buy_volume
    sell_quote = None if c.buy_quote_volume is None or c.quote_volume is None \
        else c.quote_volume - c.buy_quote_volume
    rec.update(
        type="bar", venue=venue, product=product, interval_s=interval_ms / 1000.0,
        start=c.start, end=c.start + interval_ms, open=c.open, high=c.high, low=c.low,
        close=c.close, volume=c.volume, quote_volume=c.quote_volume,
        vwap=(c.quote_volume / c.volume if c.quote_volume is not None and c.volume > 0.0
              else None),
        trades=c.trades, buy_volume=c.buy_volume, sell_volume=sells,
        buy_quote_volume=c.buy_quote_volume, sell_quote_volume=sell_quote,
        revision=0, complete=True, source="rest")
    return rec


def check_candle(c: Candle) -> Candle:
    """``c`` if its prices are consistent (low <= open, close <= high), else ValueError."""
    if not (c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high):
        raise ValueError(f"candle at {c.start}: low {c.low}, open {c.open}, close {c.close}, "
                         f"high {c.high} are inconsistent")
    return c

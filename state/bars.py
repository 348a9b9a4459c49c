"""Time bars per product: OHLCV and buy/sell aggregates by trade time, joined with the book.

Why a stateful step of lobstream's own instead of Bytewax's windowing operators:
a bar here is built from three inputs of one product (trades, the book's
summaries, tickers) that already meet in the product's book state, so the book
statistics (summed OFI, last mid, time-weighted spread) join the trades without a
second keyed stream; a late trade must *revise* an emitted bar (Bytewax sends
late items to a side output, never folding them); and Bytewax's event clock
re-wakes its operator in a busy loop when event time lags the wall clock
(issue #578: 100 % CPU measured), while here bars only move when a frame arrives,
so an idle feed costs nothing.

Event time: every input carries the exchange's time. The watermark of a product
is the latest exchange time seen on its connection (its own trades and updates,
and :class:`~state.events.Clock` items the feed derives from any frame with a
time), minus ``lateness``. A bar ``[start, end)`` is emitted when the watermark
passes ``end``, so replays at any speed give the same bars, and a quiet product's
bar still closes while the connection's other traffic moves the clock. Nothing
reads the local clock.
A time far behind the kept bars makes no bar, and one far ahead moves no clock
until the next confirms it (:class:`LeapGuard`): one forged time must not close
every bar to come, nor make a year of empty bars.

Revisions: a trade whose bar was already emitted updates it and the bar is
emitted again with ``revision + 1`` (downstream upserts keep the highest), for
``keep`` after the bar's end; trades older than that are counted as too late.
At end of input every open bar is emitted with ``complete: false``.

Units: ``volume`` and the ``*_volume`` fields are base currency (inverse contracts
converted with their contract size, see :class:`~state.events.Trade`);
``quote_volume`` and the ``*_quote_volume`` fields are quote currency (USD for
Deribit and COIN-M inverse contracts).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from state.events import Ticker, Trade

Record = Dict[str, Any]

#: The largest step of the exchange clock taken from one time alone (see LeapGuard).
MAX_LEAP_MS = 3_600_000.0
#: Empty windows emitted at most per interval when the watermark moves (bar_empty).
MAX_EMPTY_WINDOWS = 10_000

#: Bar fields, in output order (the README documents each).
BAR_FIELDS = (
    "type", "venue", "product", "interval_s", "start", "end",
    "open", "high", "low", "close", "volume", "quote_volume", "vwap",
    "trades", "buy_trades", "sell_trades", "buy_volume", "sell_volume",
    "buy_quote_volume", "sell_quote_volume", "fills", "missing_trades",
    "ofi", "mid", "spread_bps_mean", "spread_bps_min", "spread_bps_max", "book_updates",
    "mark", "index", "funding_rate", "basis_bps", "log_return", "realized_vol",
    "revision", "complete", "source",
)


class Bar:
    """One window's aggregates (mutable while the window is kept)."""

    __slots__ = ("start", "end", "open", "high", "low", "close", "t_open", "t_close",
                 "volume", "quote", "trades", "buy_trades", "buy_volume", "buy_quote",
                 "fills", "missing", "ofi", "mid", "updates", "spread_area", "spread_time",
                 "spread_min", "spread_max", "mark", "index", "funding", "last_px",
                 "sq_returns", "revision", "emitted")

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.open = self.high = self.low = self.close = None  # type: Optional[float]
        self.t_open = self.t_close = 0.0
        self.volume = self.quote = self.buy_volume = self.buy_quote = 0.0
        self.trades = self.buy_trades = self.fills = self.missing = self.updates = 0
        self.ofi = 0.0
        self.mid: Optional[float] = None
        self.spread_area = self.spread_time = 0.0
        self.spread_min: Optional[float] = None
        self.spread_max: Optional[float] = None
        self.mark = self.index = self.funding = None  # type: Optional[float]
        self.last_px: Optional[float] = None
        self.sq_returns = 0.0
        self.revision = -1
        self.emitted = False

    def add_trade(self, t: Trade, missing: int) -> None:
        px, ts = t.price, t.ts_exchange
        if self.trades == 0:  # (an empty window's carried-forward prices give way)
            self.open = self.high = self.low = self.close = px
            self.t_open = self.t_close = ts
        else:
            if ts < self.t_open:
                self.open, self.t_open = px, ts
            if ts >= self.t_close:
                self.close, self.t_close = px, ts
            self.high = max(self.high, px)  # type: ignore[type-var]
            self.low = min(self.low, px)  # type: ignore[type-var]
        if self.last_px is not None and self.last_px > 0.0:
            r = math.log(px / self.last_px)
            self.sq_returns += r * r
        self.last_px = px
        self.trades += 1
        self.fills += t.fills
        self.missing += missing
        self.volume += t.base_size
        self.quote += t.notional
        if t.side == "buy":
            self.buy_trades += 1
            self.buy_volume += t.base_size
            self.buy_quote += t.notional

    def add_spread(self, value: float, duration: float) -> None:
        self.spread_area += value * duration
        self.spread_time += duration

    def record(self, venue: str, product: str, interval_ms: int, complete: bool,
               prev_close: Optional[float]) -> Record:
        mid, index = self.mid, self.index
        close = self.close
        sells = self.trades - self.buy_trades
        return {
            "type": "bar", "venue": venue, "product": product,
            "interval_s": interval_ms / 1000.0, "start": self.start, "end": self.end,
            "open": self.open, "high": self.high, "low": self.low, "close": close,
            "volume": self.volume, "quote_volume": self.quote,
            "vwap": self.quote / self.volume if self.volume > 0.0 else None,
            "trades": self.trades, "buy_trades": self.buy_trades, "sell_trades": sells,
            "buy_volume": self.buy_volume, "sell_volume": self.volume - self.buy_volume,
            "buy_quote_volume": self.buy_quote, "sell_quote_volume": self.quote - self.buy_quote,
            "fills": self.fills, "missing_trades": self.missing,
            "ofi": self.ofi, "mid": mid,
            "spread_bps_mean": (self.spread_area / self.spread_time
                                if self.spread_time > 0.0 else None),
            "spread_bps_min": self.spread_min, "spread_bps_max": self.spread_max,
            "book_updates": self.updates,
            "mark": self.mark, "index": index, "funding_rate": self.funding,
            "basis_bps": ((mid - index) / index * 1e4
                          if mid is not None and index is not None and index > 0.0 else None),
            "log_return": (math.log(close / prev_close)
                           if close is not None and prev_close and prev_close > 0.0 else None),
            "realized_vol": math.sqrt(self.sq_returns) if self.trades > 1 else None,
            "revision": self.revision, "complete": complete, "source": "trades",
        }


class Series:
    """The bars of one interval for one product, and the watermark logic."""

    __slots__ = ("interval", "bars", "prev_close", "spread", "last_book_ts")

    def __init__(self, interval_ms: int) -> None:
        self.interval = interval_ms
        #: Open and recently emitted bars by start, oldest first.
        self.bars: Dict[int, Bar] = {}
        #: Close of the newest bar dropped from :attr:`bars` (for ``log_return``).
        self.prev_close: Optional[float] = None
        #: The spread in force since ``last_book_ts`` (time-weighting).
        self.spread: Optional[float] = None
        self.last_book_ts: Optional[float] = None

    def ended_before(self, ts: float, horizon: float) -> bool:
        """Whether the window holding ``ts`` ended before ``horizon``."""
        return int(ts // self.interval) * self.interval + self.interval < horizon

    def bar(self, ts: float) -> Bar:
        start = int(ts // self.interval) * self.interval
        bar = self.bars.get(start)
        if bar is None:
            bar = self.bars[start] = Bar(start, start + self.interval)
            if len(self.bars) > 1 and start < max(self.bars):
                self.bars = dict(sorted(self.bars.items()))
        return bar

    def _accrue(self, until: float) -> None:
        """Credit the spread in force since the last book update, up to ``until``,
        to the bars it spans (only bars that exist: windows without trades or
        updates hold no bar)."""
        since, value = self.last_book_ts, self.spread
        if since is None or value is None or until <= since:
            return
        for bar in self.bars.values():
            lo, hi = max(since, bar.start), min(until, bar.end)
            if hi > lo and not bar.emitted:
                bar.add_spread(value, hi - lo)

    def on_book(self, ts: float, mid: Optional[float], spread_bps: Optional[float],
                ofi: Optional[float]) -> None:
        self._accrue(ts)
        bar = self.bar(ts)
        if bar.emitted:
            return  # a book update behind the watermark changes no emitted bar
        bar.updates += 1
        if ofi is not None:
            bar.ofi += ofi
        if mid is not None:
            bar.mid = mid
        if spread_bps is not None:
            bar.spread_min = spread_bps if bar.spread_min is None else min(bar.spread_min, spread_bps)
            bar.spread_max = spread_bps if bar.spread_max is None else max(bar.spread_max, spread_bps)
        if self.last_book_ts is None or ts >= self.last_book_ts:
            self.last_book_ts, self.spread = ts, spread_bps

    def close_until(self, watermark: float, empty: bool
                    ) -> List[Tuple[Bar, Optional[float]]]:
        """Bars whose end the watermark passed and that were not emitted yet, each
        with the close of the bar before it (for its ``log_return``); with
        ``empty``, also the windows in between that saw no trade (their prices are
        the previous close, their volumes zero). One pass over the bars: a jump of
        the clock over thousands of windows costs thousands of steps, not their
        square."""
        bars = self.bars
        if empty and bars:
            # (At most MAX_EMPTY_WINDOWS: after a longer silence the oldest are not
            # shown, so that no jump of the clock costs more than that.)
            first = max(min(bars), (int(watermark) // self.interval - MAX_EMPTY_WINDOWS)
                        * self.interval)
            missing = [start for start in range(first, int(watermark) - self.interval + 1,
                                                self.interval) if start not in bars]
            if missing:
                for start in missing:
                    bars[start] = Bar(start, start + self.interval)
                bars = self.bars = dict(sorted(bars.items()))
        out: List[Tuple[Bar, Optional[float]]] = []
        prev = self.prev_close
        for bar in bars.values():
            if bar.end > watermark:
                break
            if not bar.emitted:
                self._accrue_to_end(bar)
                bar.emitted = True  # closed, whether it is shown or not
                bar.revision = 0
                if bar.trades == 0:
                    bar.open = bar.high = bar.low = bar.close = prev
                if empty or bar.trades > 0:
                    out.append((bar, prev))
            if bar.close is not None:
                prev = bar.close
        return out

    def _accrue_to_end(self, bar: Bar) -> None:
        since, value = self.last_book_ts, self.spread
        if since is not None and value is not None and since < bar.end:
            bar.add_spread(value, bar.end - max(since, bar.start))

    def forget_before(self, horizon: float) -> None:
        """Drop emitted bars that ended before ``horizon`` (no revision any more)."""
        for start in [s for s, b in self.bars.items() if b.emitted and b.end < horizon]:
            self.prev_close = self.bars.pop(start).close or self.prev_close

    def close_of(self, bar: Bar) -> Optional[float]:
        """The close of the bar before ``bar`` (for its ``log_return``)."""
        before = [b for s, b in self.bars.items() if s < bar.start and b.close is not None]
        return before[-1].close if before else self.prev_close


class LeapGuard:
    """Exchange time moves forward, but not by one value alone.

    Exchange times are untrusted: the parsers bound them to 2000-2100, and one
    frame carrying 2099 (or 2**40 ms ahead) would otherwise move a clock past
    every real time to come. A time more than :data:`MAX_LEAP_MS` ahead of the
    clock is taken only when the next one confirms it (is within MAX_LEAP_MS of
    it), as the frames after a real outage do."""

    __slots__ = ("candidate",)

    def __init__(self) -> None:
        self.candidate: Optional[float] = None

    def allows(self, clock: float, ts: float) -> bool:
        """Whether the clock at ``clock`` may move to ``ts`` (a later time)."""
        if ts - clock <= MAX_LEAP_MS or clock == -math.inf:
            self.candidate = None
            return True
        candidate, self.candidate = self.candidate, ts
        return candidate is not None and abs(ts - candidate) <= MAX_LEAP_MS


class Bars:
    """Every interval's bars for one product; see the module docstring."""

    __slots__ = ("series", "lateness", "keep", "empty", "watermark", "clock", "too_late",
                 "leaps")

    def __init__(self, intervals_ms: Sequence[int], lateness_ms: float, keep_ms: float,
                 empty: bool = False) -> None:
        self.series = [Series(i) for i in intervals_ms]
        self.lateness = lateness_ms
        self.keep = keep_ms
        self.empty = empty
        #: Exchange time reached on the product's connection.
        self.clock = -math.inf
        self.watermark = -math.inf
        self.too_late = 0
        self.leaps = LeapGuard()

    def on_trade(self, t: Trade, missing: int, venue: str, product: str) -> List[Record]:
        out: List[Record] = []
        for s in self.series:
            if s.ended_before(t.ts_exchange, self.watermark - self.keep):
                self.too_late += 1
                continue
            bar = s.bar(t.ts_exchange)
            shown = bar.emitted and bar.trades > 0
            bar.add_trade(t, missing)
            if bar.emitted:
                # A revision of a bar already out, or (an empty window) its first showing.
                bar.revision = bar.revision + 1 if shown or self.empty else 0
                out.append(bar.record(venue, product, s.interval, True, s.close_of(bar)))
        return out + self.advance(t.ts_exchange, venue, product)

    def on_book(self, ts: float, summary: Record) -> None:
        # (Like a trade's, a window older than the kept ones is not made again.)
        for s in self.series:
            if not s.ended_before(ts, self.watermark - self.keep):
                s.on_book(ts, summary["mid"], summary["spread_bps"], summary["ofi"])

    def on_ticker(self, t: Ticker) -> None:
        for s in self.series:
            if s.ended_before(t.ts_exchange, self.watermark - self.keep):
                continue
            bar = s.bar(t.ts_exchange)
            if bar.emitted:
                continue
            if t.mark is not None:
                bar.mark = t.mark
            if t.index is not None:
                bar.index = t.index
            if t.funding_rate is not None:
                bar.funding = t.funding_rate

    def advance(self, ts: float, venue: str, product: str) -> List[Record]:
        """Move the clock to exchange time ``ts``; emit the bars the watermark passed."""
        if ts <= self.clock or not self.leaps.allows(self.clock, ts):
            return []
        self.clock = ts
        self.watermark = ts - self.lateness
        out: List[Record] = []
        for s in self.series:
            for bar, prev_close in s.close_until(self.watermark, self.empty):
                out.append(bar.record(venue, product, s.interval, True, prev_close))
            s.forget_before(self.watermark - self.keep)
        return out

    def finish(self, venue: str, product: str) -> List[Record]:
        """End of input: every bar not emitted yet, marked incomplete."""
        out: List[Record] = []
        for s in self.series:
            for bar in s.bars.values():
                if not bar.emitted and (bar.trades > 0 or self.empty):
                    bar.emitted = True
                    bar.revision = 0
                    out.append(bar.record(venue, product, s.interval, False, s.close_of(bar)))
        return out


def parse_interval(text: str) -> int:
    """``"1s"``, ``"10s"``, ``"1m"``, ``"5m"``, ``"1h"``, ``"1d"`` as milliseconds."""
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{text!r} is not an interval (e.g. 1s, 10s, 1m, 5m, 1h, 1d)")
    return int(number) * units[unit]


def bar_spans(ms_list: Sequence[int]) -> Tuple[int, ...]:
    """Intervals sorted and deduplicated."""
    return tuple(sorted(set(ms_list)))

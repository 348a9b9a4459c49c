"""The charts of ``lobstream plot``, drawn with matplotlib's Agg backend (no display needed).

One figure per chart, one panel per product (at most :data:`MAX_PANELS`), each
readable at a glance: a title naming the product and what is drawn, axis labels
with units, times in UTC. The numbers come from :mod:`analysis.measures`; this
module only draws.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.book_at import BookAt  # noqa: E402
from analysis.measures import cumulative_ofi, spread_alerts, volatility_by_hour  # noqa: E402

MAX_PANELS = 6
WIDTH_IN = 11.0
PANEL_IN = 3.4
BID = "#1a9850"
ASK = "#d73027"
MID = "#2c3e50"
MICRO = "#e67e22"

Name = Tuple[str, str]


def _panels(names: Sequence[Name], title: str) -> Tuple[Figure, List[plt.Axes]]:
    shown = list(names)[:MAX_PANELS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(WIDTH_IN, PANEL_IN * len(shown) + 0.6),
                             squeeze=False, layout="constrained")
    fig.suptitle(title, fontsize=13, fontweight="bold")
    return fig, [a[0] for a in axes]


def _utc_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator(tz="UTC", minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    ax.set_xlabel("time (UTC)")
    ax.grid(True, alpha=0.3)


def _of(df: pd.DataFrame, name: Name) -> pd.DataFrame:
    """One product's rows that have a time to be drawn at (exchange time, bar start)."""
    time = "ts_exchange" if "ts_exchange" in df.columns else "start"
    return df[(df["venue"].astype(str) == name[0]) & (df["product"].astype(str) == name[1])
              & df[time].notna()]


def _per_product(df: pd.DataFrame, names: Sequence[Name], title: str,
                 draw: Callable[[plt.Axes, pd.DataFrame, Name], None]) -> Figure:
    fig, axes = _panels(names, title)
    for ax, name in zip(axes, names):
        part = _of(df, name)
        ax.set_title(f"{name[0]}:{name[1]}", loc="left", fontsize=11)
        if part.empty:
            ax.text(0.5, 0.5, "no data in the chosen range", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        draw(ax, part, name)
    return fig


def book(summaries: pd.DataFrame, names: Sequence[Name], alert_bps: float) -> Figure:
    """Mid and microprice, the spread as a band from bid to ask, spread alerts marked."""

    def draw(ax: plt.Axes, s: pd.DataFrame, name: Name) -> None:
        t = s["ts_exchange"]
        ax.fill_between(t, s["bid_px"], s["ask_px"], step="post", color="#95a5a6", alpha=0.35,
                        linewidth=0, label="spread (bid to ask)")
        ax.step(t, s["mid"], where="post", color=MID, linewidth=1.1, label="mid")
        ax.step(t, s["microprice"], where="post", color=MICRO, linewidth=0.9, alpha=0.9,
                label="microprice")
        alerts = spread_alerts(s, alert_bps)
        if len(alerts):
            ax.scatter(alerts["ts_exchange"], alerts["mid"], marker="v", s=46, color=ASK,
                       zorder=5, label=f"spread alert (> {alert_bps:g} bps)")
        ax.set_ylabel("price (quote currency)")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        _utc_axis(ax)
        ax.legend(loc="upper left", fontsize=8, ncols=4)

    return _per_product(summaries, names, "Mid and microprice with the spread", draw)


def imbalance(summaries: pd.DataFrame, names: Sequence[Name], depth: Optional[int]) -> Figure:
    """Top-of-book and depth imbalance, -1 (all size on the ask) to +1 (all on the bid)."""
    levels = f"best {depth} levels" if depth else "best levels of the run's depth"

    def draw(ax: plt.Axes, s: pd.DataFrame, name: Name) -> None:
        t = s["ts_exchange"]
        ax.step(t, s["imbalance"], where="post", color=MID, linewidth=0.8, alpha=0.8,
                label="top of book")
        ax.step(t, s["depth_imbalance"], where="post", color=MICRO, linewidth=1.2,
                label=f"depth ({levels})")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("imbalance (bid - ask) / (bid + ask)")
        _utc_axis(ax)
        ax.legend(loc="upper left", fontsize=8, ncols=2)

    return _per_product(summaries, names, "Order book imbalance", draw)


def ofi(summaries: pd.DataFrame, names: Sequence[Name]) -> Figure:
    """Cumulative order flow imbalance (Cont, Kukanov and Stoikov, 2014)."""
    data = summaries.assign(cum_ofi=cumulative_ofi(summaries))

    def draw(ax: plt.Axes, s: pd.DataFrame, name: Name) -> None:
        ax.step(s["ts_exchange"], s["cum_ofi"], where="post", color=MID, linewidth=1.1)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_ylabel("cumulative OFI (venue size units)")
        _utc_axis(ax)

    return _per_product(data, names, "Cumulative order flow imbalance (positive: buying "
                        "pressure)", draw)


def volume(bars: pd.DataFrame, names: Sequence[Name]) -> Figure:
    """Per bar: buy volume up, sell volume down (aggressor side), trade count on the right."""
    interval = float(bars["interval_s"].min()) if len(bars) else 60.0
    width = pd.Timedelta(seconds=interval * 0.8)

    def draw(ax: plt.Axes, b: pd.DataFrame, name: Name) -> None:
        mid = b["start"] + pd.Timedelta(seconds=interval / 2)
        # A bar still open when the input ended is drawn hatched: it is not a full bar.
        hatch = ["//" if not done else "" for done in b["complete"].fillna(True)]
        ax.bar(mid, b["buy_volume"], width=width, color=BID, hatch=hatch,
               label="buy volume (taker buys)")
        ax.bar(mid, -b["sell_volume"], width=width, color=ASK, hatch=hatch,
               label="sell volume (taker sells, below 0)")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_ylabel("volume per bar (base currency)")
        counts = ax.twinx()
        counts.plot(mid, b["trades"].astype(float), color=MID, marker="o", markersize=3,
                    linewidth=1.0, label="trades per bar")
        counts.set_ylabel("trades per bar")
        counts.set_ylim(bottom=0)
        _utc_axis(ax)
        handles = ax.get_legend_handles_labels()
        more = counts.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8,
                  ncols=3)

    span = f"{interval / 60:g}-minute" if interval >= 60 else f"{interval:g}-second"
    only = bars[bars["interval_s"] == interval] if len(bars) else bars
    return _per_product(only, names, f"Buy and sell volume per {span} bar (hatched: "
                        "incomplete, the input ended)", draw)


def volatility(summaries: pd.DataFrame, names: Sequence[Name], dt_s: float) -> Figure:
    """Annualised realized volatility of the mid by hour of day (24/7 market)."""

    def draw(ax: plt.Axes, s: pd.DataFrame, name: Name) -> None:
        vol = volatility_by_hour(s, dt_s)
        ax.bar(vol["hour"], vol["vol"] * 100.0, width=0.8, color=MID)
        for _, row in vol.iterrows():
            ax.annotate(f"{int(row['returns'])} returns", (row["hour"], row["vol"] * 100.0),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")
        ax.set_xlim(-0.6, 23.6)
        ax.set_xticks(range(24))
        ax.set_xlabel("hour of day (UTC)")
        ax.set_ylabel("annualised volatility (%)")
        ax.grid(True, axis="y", alpha=0.3)
        if vol.empty:
            ax.text(0.5, 0.5, "too few returns in the chosen range", ha="center", va="center",
                    transform=ax.transAxes)

    return _per_product(summaries, names, f"Realized volatility of the mid by hour of day "
                        f"({dt_s:g} s returns, annualised for 24/7: x sqrt(365 x 24 x 3600 / "
                        f"{dt_s:g}))", draw)


def depth(b: BookAt, span_pct: float) -> Figure:
    """Cumulative size on each side within ``span_pct`` % of the mid."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 5.2), layout="constrained")
    when = pd.Timestamp(b.ts, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] \
        if b.ts is not None else "?"
    state = "" if b.valid else " (book NOT synced at that time: levels not trusted)"
    fig.suptitle(f"Depth of {b.venue}:{b.product} at {when} UTC{state}", fontsize=13,
                 fontweight="bold")
    if not b.bids or not b.asks:
        ax.text(0.5, 0.5, "one side of the book is empty", ha="center", va="center",
                transform=ax.transAxes)
        return fig
    mid = (b.bids[0][0] + b.asks[0][0]) / 2.0
    lo, hi = mid * (1 - span_pct / 100.0), mid * (1 + span_pct / 100.0)
    for levels, color, label in ((b.bids, BID, "bids"), (b.asks, ASK, "asks")):
        near = [(p, s) for p, s in levels if lo <= p <= hi]
        prices = [p for p, _ in near]
        cum = pd.Series([s for _, s in near]).cumsum()
        ax.step(prices, cum, where="post", color=color, linewidth=1.4,
                label=f"{label}: {len(near):,} levels within {span_pct:g} %")
        ax.fill_between(prices, cum, step="post", color=color, alpha=0.25)
    ax.axvline(mid, color=MID, linewidth=0.8, linestyle="--", label=f"mid {mid:,.6g}")
    ax.set_xlabel("price (quote currency)")
    ax.set_ylabel("cumulative size (venue units)")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", fontsize=9)
    return fig

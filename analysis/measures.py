"""What the charts show, computed from the loaded outputs (pandas, no plotting).

* :func:`spread_alerts`: where a spread alert fired, by the flow's own rule (the
  first summary of each excursion above the threshold, not every update), so a
  chart can mark alerts from the JSON-lines files, which do not hold them.
* :func:`cumulative_ofi`: the running sum of order flow imbalance per product.
* :func:`volatility_by_hour`: realized volatility by hour of day, annualised for a
  market that trades around the clock.

**Annualising a 24/7 market.** Equity conventions (252 days of 6.5 hours) do not
apply to crypto, which trades every hour of every day. Mid prices are sampled on
a regular grid of ``dt`` seconds (the last mid at or before each grid point), and
``r`` are the log returns between grid points. For each hour of day ``h`` (UTC)
the realized variance per return is ``mean(r²)`` over every return that ends in
hour ``h`` (all days pooled; no mean is subtracted, as realized variance is
defined). A year of a 24/7 market has ``365 × 24 × 3600 / dt`` such returns, so
the annualised volatility is ``sqrt(mean(r²) × 365 × 24 × 3600 / dt)``. Hours
with fewer than ``min_returns`` returns are left out rather than shown noisy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Seconds in a year of a market that never closes.
YEAR_S = 365 * 24 * 3600


def spread_alerts(summaries: pd.DataFrame, alert_bps: float) -> pd.DataFrame:
    """The summaries at which a spread alert fired: spread above ``alert_bps``
    where the product's previous summary was not."""
    if summaries.empty:
        return summaries
    wide = summaries["spread_bps"] > alert_bps
    before = wide.groupby([summaries["venue"], summaries["product"]], observed=True).shift(
        1, fill_value=False)
    return summaries[wide & ~before.astype(bool)]


def cumulative_ofi(summaries: pd.DataFrame) -> pd.Series:
    """Running sum of ``ofi`` per product (snapshots, whose OFI is null, add 0)."""
    return summaries["ofi"].fillna(0.0).groupby([summaries["venue"], summaries["product"]],
                                                observed=True).cumsum()


def grid_mid(summaries: pd.DataFrame, dt_s: float) -> pd.Series:
    """One product's mid on a regular grid: the last mid at or before each point."""
    mids = summaries.dropna(subset=["mid"]).set_index("ts_exchange")["mid"]
    mids = mids[~mids.index.duplicated(keep="last")].sort_index()
    if mids.empty:
        return mids
    return mids.resample(pd.Timedelta(seconds=dt_s), label="right", closed="right").last().ffill()


def volatility_by_hour(summaries: pd.DataFrame, dt_s: float = 60.0,
                       min_returns: int = 2) -> pd.DataFrame:
    """Annualised realized volatility (fraction, e.g. 0.45 = 45 %) per hour of day
    (UTC), from one product's mid; columns ``hour``, ``vol``, ``returns``."""
    if not dt_s > 0:
        raise ValueError("the sampling interval must be positive")
    mid = grid_mid(summaries, dt_s)
    returns = np.log(mid).diff().dropna()
    returns = returns[np.isfinite(returns)]
    by_hour = (returns ** 2).groupby(returns.index.hour)
    out = pd.DataFrame({"mean_sq": by_hour.mean(), "returns": by_hour.size()})
    out = out[out["returns"] >= min_returns]
    out["vol"] = np.sqrt(out["mean_sq"] * YEAR_S / dt_s)
    out.index.name = "hour"
    return out.reset_index()[["hour", "vol", "returns"]]

"""The end of a run: one table of what happened to each product, and the exit code.

Printed on stderr when the flow ends (end of input, Ctrl-C, every product
refused), so a user sees per product how many book updates were applied, how
many gaps and resyncs it took, the trades and bars counted and the final best
bid and ask, without reading the output files. The exit code tells scripts
whether anything could be followed at all.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from dataflows.watch import ProductView, nothing_followed

#: Exit code of a run in which no product could be followed.
NOTHING_FOLLOWED = 3


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          right: Sequence[bool]) -> str:
    """A plain text table, columns padded to their widest cell."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right)).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


def price(value: Optional[float]) -> str:
    """A price with the digits it needs (option premia have 4, BTC has 2)."""
    return "-" if value is None else f"{value:,.8f}".rstrip("0").rstrip(".")


def end_table(views: Sequence[ProductView]) -> str:
    """Per product: state, updates, gaps, resyncs, trades, bars, final bid/ask."""
    headers = ("product", "state", "updates", "gaps", "resyncs", "trades", "bars", "bid", "ask")
    rows = [(v.name + (" (resumed)" if v.resumed else ""), v.state, f"{v.updates:,}",
             f"{v.gaps:,}", f"{v.resyncs:,}", f"{v.trades:,}", f"{v.bars:,}",
             price(v.bid), price(v.ask)) for v in views]
    if not rows:
        return "no products were followed in this process"
    return table(headers, rows, (False, False) + (True,) * 7)


def closing(views: Sequence[ProductView], seconds: float, where: str = "") -> List[str]:
    """The lines printed at the end of a run."""
    lines = [f"lobstream: run ended after {_duration(seconds)}{where}", end_table(views)]
    why = nothing_followed(views)
    if why:
        lines.append(f"lobstream: nothing could be followed: {why}")
    return lines


def exit_code(views: Sequence[ProductView]) -> int:
    return NOTHING_FOLLOWED if nothing_followed(views) else 0


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"

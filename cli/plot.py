"""``lobstream plot``: PNG charts from a run's JSON-lines outputs (and captures, for depth).

Charts: ``book`` (mid and microprice, the spread as a band, spread alerts
marked), ``imbalance`` (top-of-book and depth), ``ofi`` (cumulative order flow
imbalance), ``volume`` (per-bar buy vs sell volume and trade counts),
``volatility`` (realized volatility by hour of day, annualised for 24/7), and
``depth`` (the book at a chosen time, rebuilt from captures). Needs the
``plot`` extra (matplotlib, pandas).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Tuple

from cli.common import Command, fail

CHARTS = ("book", "imbalance", "ofi", "volume", "volatility", "depth")

EXAMPLES = """\
examples:
  lobstream replay recordings/binance_spot_btcusdt.jsonl.gz --out out/btc --set bars.intervals=5s
  lobstream plot book out/btc -o book.png
  lobstream plot volume out/btc -o volume.png
  lobstream plot imbalance out/offline --product coinbase:BTC-USD \\
      --start 2026-08-09T21:05:50 --end 2026-08-09T21:06:00 -o imb.png
  lobstream plot depth recordings/coinbase_advanced_btc_eth.jsonl.gz --product BTC-USD \\
      --at 2026-08-09T21:06:00 --span 0.5 -o depth.png

Times are ISO 8601, UTC unless they name a zone; --start/--end select by
exchange time (bars by their start)."""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chart", choices=CHARTS, help="what to draw")
    parser.add_argument("inputs", nargs="+", metavar="PATH",
                        help="JSON-lines outputs (files or directories; .gz too); captures for "
                             "depth")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.png", help="PNG to write")
    parser.add_argument("--product", action="append", default=[], metavar="[VENUE:]PRODUCT",
                        help="products to draw (repeatable; default: all, up to 6)")
    parser.add_argument("--start", metavar="TIME", help="from this time (UTC)")
    parser.add_argument("--end", metavar="TIME", help="until this time (UTC)")
    parser.add_argument("--alert-bps", type=float, default=10.0,
                        help="book: mark spread alerts above this many bps (the run's "
                             "alert_bps; default %(default)g)")
    parser.add_argument("--depth", type=int, help="imbalance: the run's depth, for the legend")
    parser.add_argument("--sample", type=float, default=60.0, metavar="S",
                        help="volatility: seconds between mid samples (default %(default)g)")
    parser.add_argument("--at", metavar="TIME", help="depth: the book at this receive time "
                        "(default: the end of the captures)")
    parser.add_argument("--span", type=float, default=1.0, metavar="PCT",
                        help="depth: show prices within PCT %% of the mid (default %(default)g)")
    parser.add_argument("--dpi", type=int, default=110, help="resolution (default %(default)s)")


def _names(frames: dict, wanted: List[str]) -> List[Tuple[str, str]]:
    from analysis.load import matches, product_names

    return [n for n in product_names(frames) if matches(n[0], n[1], wanted)]


def _execute(args: argparse.Namespace) -> int:
    prog = "lobstream plot"
    try:
        from analysis import figures
        from analysis.book_at import book_at
        from analysis.load import load, parse_time
    except ImportError as ex:
        return fail(prog, f"{ex.name} is not installed: pip install 'lobstream[plot]'")
    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
        if args.chart == "depth":
            if len(args.product) != 1:
                return fail(prog, "depth draws one product: give --product [VENUE:]PRODUCT")
            book = book_at(args.inputs, args.product[0], parse_time(args.at) if args.at else None)
            fig = figures.depth(book, args.span)
        else:
            kinds = ["bar"] if args.chart == "volume" else ["summary"]
            frames = load(args.inputs, kinds, args.product, start, end)
            names = _names(frames, args.product)
            if not names:
                return fail(prog, "no records for the chosen products and time range in "
                            + ", ".join(args.inputs), 1)
            if args.chart == "book":
                fig = figures.book(frames["summary"], names, args.alert_bps)
            elif args.chart == "imbalance":
                fig = figures.imbalance(frames["summary"], names, args.depth)
            elif args.chart == "ofi":
                fig = figures.ofi(frames["summary"], names)
            elif args.chart == "volume":
                fig = figures.volume(frames["bar"], names)
            else:
                fig = figures.volatility(frames["summary"], names, args.sample)
        fig.savefig(args.output, dpi=args.dpi)
    except (ValueError, OSError) as ex:
        return fail(prog, str(ex), 1)
    print(f"{args.output}: {args.chart} chart written", file=sys.stderr)
    return 0


COMMANDS = [
    Command("plot", "draw PNG charts from the outputs: book, imbalance, OFI, volume, "
            "volatility, depth", __doc__.split("\n\n", 1)[1], _configure, _execute,
            epilog=EXAMPLES),
]

"""``python -m sinks.store``: query, import, backfill and maintain a tick store.

::

    python -m sinks.store query ROOT "SELECT ..." [--as-of TIME] [--csv]
    python -m sinks.store read ROOT KIND VENUE PRODUCT [--start T] [--end T] [--as-of T]
    python -m sinks.store import ROOT CAPTURE... [--bars 1m,5m] [--venue NAME]
    python -m sinks.store backfill ROOT VENUE PRODUCT START END [--interval 1m] [--url URL]
    python -m sinks.store versions ROOT KIND VENUE PRODUCT DATE
    python -m sinks.store delete ROOT KIND VENUE PRODUCT DATE --by WHO --reason WHY
    python -m sinks.store undelete ROOT KIND VENUE PRODUCT DATE VERSION --by WHO --reason WHY
    python -m sinks.store compact ROOT [--max-files N]

Times are ISO-8601 (UTC unless they say otherwise) or epoch milliseconds. Every
error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import List, Optional, Sequence

from sinks.store import KINDS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sinks.store", description=__doc__.split("::")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def when(text: str) -> float:
        from sinks.store.read import to_ms
        try:
            return to_ms(float(text) if text.replace(".", "", 1).isdigit() else text)
        except (ValueError, TypeError) as ex:
            raise argparse.ArgumentTypeError(f"{text!r}: {ex}") from None

    q = sub.add_parser("query", help="SQL over the store (DuckDB); views: " + ", ".join(KINDS)
                       + ", bar_final")
    q.add_argument("root")
    q.add_argument("sql")
    q.add_argument("--as-of", type=when)
    q.add_argument("--csv", action="store_true", help="CSV instead of a table")
    r = sub.add_parser("read", help="rows of one kind, venue and product")
    r.add_argument("root")
    r.add_argument("kind", choices=KINDS)
    r.add_argument("venue")
    r.add_argument("product")
    for name in ("--start", "--end", "--as-of"):
        r.add_argument(name, type=when)
    r.add_argument("--all-revisions", action="store_true")
    i = sub.add_parser("import", help="captures (or other recorders' files) as new versions")
    i.add_argument("root")
    i.add_argument("paths", nargs="+")
    i.add_argument("--bars", default="1m", help="bar intervals, e.g. 1s,1m")
    i.add_argument("--venue", help="venue of files whose content names none")
    b = sub.add_parser("backfill", help="historical candles over REST as bars (source rest)")
    b.add_argument("root")
    b.add_argument("venue")
    b.add_argument("product")
    b.add_argument("start", help="first UTC date, YYYY-MM-DD")
    b.add_argument("end", help="last UTC date, YYYY-MM-DD (inclusive)")
    b.add_argument("--interval", default="1m")
    b.add_argument("--url", help="REST base URL (default: the venue's)")
    for name in ("versions", "delete", "undelete"):
        v = sub.add_parser(name, help={"versions": "the versions of a day, with their audit "
                                       "trail", "delete": "logically delete a day",
                                       "undelete": "bring a version back"}[name])
        v.add_argument("root")
        v.add_argument("kind", choices=KINDS)
        v.add_argument("venue")
        v.add_argument("product")
        v.add_argument("date")
        if name == "undelete":
            v.add_argument("version", type=int)
        if name != "versions":
            v.add_argument("--by", required=True)
            v.add_argument("--reason", required=True)
    c = sub.add_parser("compact", help="merge each day's files into one, as new versions")
    c.add_argument("root")
    c.add_argument("--max-files", type=int, default=1)
    return p


def _stamp(ns: Optional[int]) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="microseconds")


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    from sinks.store.layout import PartitionDay, Root
    from sinks.store.read import query, read
    import pandas as pd

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 40)
    if args.command == "query":
        df = query(args.root, args.sql, as_of=args.as_of)
        print(df.to_csv(index=False), end="") if args.csv else print(df.to_string(index=False))
    elif args.command == "read":
        df = read(args.root, args.kind, args.venue, args.product, args.start, args.end,
                  args.as_of, all_revisions=args.all_revisions)
        print(df.to_csv(index=False), end="")
    elif args.command == "import":
        from sinks.store.bulk import import_captures
        from state.bars import parse_interval
        intervals = tuple(sorted({parse_interval(t) for t in args.bars.split(",") if t}))
        import_captures(args.root, args.paths, bar_intervals=intervals, venue=args.venue)
    elif args.command == "backfill":
        from sources.candles.backfill import backfill_days
        from state.bars import parse_interval
        done = backfill_days(Root(args.root), args.venue, args.product, args.start, args.end,
                             parse_interval(args.interval), base_url=args.url)
        for day, rows in done:
            print(f"{day}: {rows} bars")
    elif args.command == "compact":
        from sinks.store.writer import compact_all
        for day, count in compact_all(Root(args.root), args.max_files):
            print(f"{day.rel()}: {count} files merged")
    else:
        pday = PartitionDay(args.kind, args.venue, args.product, args.date)
        root = Root(args.root)
        from sinks.store.index import history
        from sinks.store.writer import delete_day, undelete_day
        if args.command == "delete":
            delete_day(root, pday, args.by, args.reason)
        elif args.command == "undelete":
            print(f"version {undelete_day(root, pday, args.version, args.by, args.reason)}")
        versions = history(root, pday)
        if not versions:
            print(f"{pday.rel()}: no versions")
        for v in versions:
            print(f"version {v.number}: {v.rows} rows in {len(v.files)} files, valid "
                  f"{_stamp(v.valid_from)} .. {_stamp(v.valid_to)}")
            for e in v.entries:
                who = " ".join(f"{k}={e[k]}" for k in ("by", "reason", "source") if k in e)
                print(f"  #{e['seq']} {_stamp(e['time'])} {e['op']} by writer {e['writer']}"
                      f"{' ' + who if who else ''}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (ValueError, OSError, KeyError) as ex:
        print(f"lobstream store: {' '.join(str(ex).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

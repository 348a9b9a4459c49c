"""``lobstream top``: a live terminal table of running flows, from their metrics endpoints.

Each process of a run serves its metrics on ``metrics_addr`` (process ``i`` on
port + ``i``, see :mod:`dataflows.monitoring`); ``top`` scrapes every endpoint it
is given once a second and shows one row per product: its state, best bid and
ask, spread in basis points, top-of-book imbalance, book updates per second
(from the counter between two scrapes), time since its last update, and its
latest bar. Reading over HTTP is what makes it work across processes and
machines, and it never slows the flow: the gauges are computed at scrape time.

Why rich: it redraws a table in place (``Live``) without curses, sizes columns
to the terminal, degrades to plain text when the output is not a terminal
(``--once`` in a script), and is actively maintained. Quit with ``q`` or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from prometheus_client.parser import text_string_to_metric_families

from cli.common import Command, UsageError, fail, run_environment
from dataflows.config import ConfigError, load_config, parse_addr
from dataflows.report import price

Name = Tuple[str, str]
#: A scrape may take this long before the endpoint is shown as unreachable.
SCRAPE_TIMEOUT_S = 2.0
#: Bytes read from one endpoint at most (a flow with thousands of products).
MAX_SCRAPE_BYTES = 32 * 2**20

_GAUGES = {
    "lobstream_book_bid_price": "bid", "lobstream_book_ask_price": "ask",
    "lobstream_book_spread_bps": "spread_bps", "lobstream_book_imbalance": "imbalance",
    "lobstream_book_last_update_age_seconds": "age", "lobstream_bar_close": "bar_close",
    "lobstream_bar_volume": "bar_volume", "lobstream_bar_trades": "bar_trades",
    "lobstream_bar_end_seconds": "bar_end", "lobstream_bar_interval_seconds": "bar_interval",
}


class Row(NamedTuple):
    """One product as one endpoint reported it."""

    endpoint: str
    venue: str
    product: str
    state: str
    values: Dict[str, float]
    updates: float


def parse_metrics(endpoint: str, text: str) -> List[Row]:
    """The products in one scrape of lobstream's metrics (Prometheus text format)."""
    states: Dict[Name, str] = {}
    values: Dict[Name, Dict[str, float]] = {}
    updates: Dict[Name, float] = {}
    for family in text_string_to_metric_families(text):
        field = _GAUGES.get(family.name)
        for s in family.samples:
            labels = s.labels
            if "venue" not in labels or "product" not in labels:
                continue
            name = (labels["venue"], labels["product"])
            if family.name == "lobstream_product_state" and s.value == 1.0:
                states[name] = labels.get("state", "?")
            elif field is not None:
                values.setdefault(name, {})[field] = s.value
            elif family.name == "lobstream_book_events" and labels.get("event") == "updates":
                updates[name] = s.value
    return [Row(endpoint, v, p, states[(v, p)], values.get((v, p), {}), updates.get((v, p), 0.0))
            for v, p in sorted(states)]


def scrape(endpoint: str) -> List[Row]:
    """Read one endpoint; OSError (URLError) when it cannot be read."""
    url = endpoint if endpoint.startswith("http") else f"http://{endpoint}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as reply:
        text = reply.read(MAX_SCRAPE_BYTES).decode("utf-8", "replace")
    return parse_metrics(endpoint, text)


class Rates:
    """Updates per second per product, from the counter's change between scrapes."""

    def __init__(self) -> None:
        self._last: Dict[Tuple[str, str, str], Tuple[float, float]] = {}

    def rate(self, row: Row, now: float) -> Optional[float]:
        key = (row.endpoint, row.venue, row.product)
        last = self._last.get(key)
        self._last[key] = (row.updates, now)
        if last is None or now <= last[1] or row.updates < last[0]:
            return None  # first sight, or the process restarted (counter went back)
        return (row.updates - last[0]) / (now - last[1])


_STYLES = {"synced": "green", "waiting": "yellow", "invalid": "yellow", "down": "red",
           "refused": "red"}


def _num(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _bps(value: Optional[float]) -> str:
    """Basis points with the digits that matter: 0.0016 on BTCUSDT, 1694.92 on an option."""
    return "-" if value is None else f"{value:.2f}" if value >= 1.0 else f"{value:.4f}"


def _ago(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _bar(values: Dict[str, float]) -> str:
    if "bar_end" not in values:
        return "-"
    end = datetime.fromtimestamp(values["bar_end"], timezone.utc).strftime("%H:%M:%S")
    span = values.get("bar_interval", 0.0)
    unit = f"{span / 60:g}m" if span >= 60 else f"{span:g}s"
    return (f"{unit} {end} C {price(values.get('bar_close'))} "
            f"v {values.get('bar_volume', 0.0):.4g} n {values.get('bar_trades', 0.0):.0f}")


def render(rows: List[Row], rates: Rates, failures: Dict[str, str], now: float,
           endpoints: List[str]) -> "object":
    """The table for one refresh (a rich renderable)."""
    from rich.table import Table

    when = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    index = {e: str(i) for i, e in enumerate(endpoints)}
    notes = [f"{i}: {e}" + (f" unreachable ({failures[e]})" if e in failures else "")
             for e, i in index.items()]
    table = Table(title=f"lobstream top: {len(rows)} products from "
                        f"{len(endpoints) - len(failures)}/{len(endpoints)} processes  {when}",
                  caption="p: process " + ", ".join(notes) + ". bps: spread in basis points of "
                          "mid; imb: top-of-book imbalance; age: since the last book update; "
                          "bar: C close, v volume, n trades. q or Ctrl-C quits.",
                  expand=False)
    # Numbers never shrink to an ellipsis; a narrow terminal folds the names and the bar.
    for header, justify in (("p", "right"), ("product", "left"), ("state", "left"),
                            ("bid", "right"), ("ask", "right"), ("bps", "right"),
                            ("imb", "right"), ("upd/s", "right"), ("age", "right"),
                            ("last bar", "left")):
        folds = header in ("product", "last bar")
        table.add_column(header, justify=justify, no_wrap=not folds,  # type: ignore[arg-type]
                         overflow="fold" if folds else "ellipsis",
                         min_width=16 if header == "product" else None if folds else len(header))
    for row in rows:
        v = row.values
        rate = rates.rate(row, now)
        table.add_row(index.get(row.endpoint, "?"), f"{row.venue}:{row.product}",
                      f"[{_STYLES.get(row.state, 'white')}]{row.state}[/]",
                      price(v.get("bid")), price(v.get("ask")), _bps(v.get("spread_bps")),
                      _num(v.get("imbalance"), "+.2f"), _num(rate, ".1f"), _ago(v.get("age")),
                      _bar(v))
    return table


def collect(endpoints: List[str]) -> Tuple[List[Row], Dict[str, str]]:
    rows: List[Row] = []
    failures: Dict[str, str] = {}
    for endpoint in endpoints:
        try:
            rows.extend(scrape(endpoint))
        except (OSError, ValueError) as ex:
            reason = getattr(ex, "reason", None) or ex
            failures[endpoint] = str(getattr(reason, "strerror", None) or reason)[:80]
    return rows, failures


@contextmanager
def _keys() -> Iterator[bool]:
    """Single key presses from a terminal (cbreak mode) while the table runs."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _quit_pressed(timeout: float, keys: bool) -> bool:
    if not keys:
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return bool(ready) and os.read(sys.stdin.fileno(), 16).strip().lower().startswith(b"q")


def endpoints_of(args: argparse.Namespace) -> List[str]:
    """The endpoints to read: as given, else the configuration's ``metrics_addr``;
    ``--processes N`` adds the next N-1 ports of each (one per process)."""
    given = list(args.endpoints)
    if not given:
        cfg = load_config(run_environment(args.config, {}))
        if not cfg.metrics_addr:
            raise UsageError("no endpoint: give HOST:PORT, or a configuration with "
                             "run.metrics_addr (lobstream run --metrics HOST:PORT)")
        given = [cfg.metrics_addr]
    out: List[str] = []
    for endpoint in given:
        try:
            host, port = parse_addr(endpoint)
        except ConfigError:
            raise UsageError(f"{endpoint!r}: expected HOST:PORT, e.g. 127.0.0.1:9464") from None
        host = f"[{host}]" if ":" in host else host
        out.extend(f"{host}:{port + i}" for i in range(args.processes))
    return out


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoints", nargs="*", metavar="HOST:PORT",
                        help="metrics endpoints (run.metrics_addr of each process); default: "
                             "the configuration's metrics_addr")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="read N processes per endpoint, at PORT, PORT+1, ... (default 1)")
    parser.add_argument("--config", metavar="CONFIG.toml",
                        help="configuration whose metrics_addr to read (default: "
                             "$LOBSTREAM_CONFIG)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="seconds between refreshes (default 1)")
    parser.add_argument("--once", action="store_true",
                        help="print the table once and exit (for scripts)")


def _execute(args: argparse.Namespace) -> int:
    prog = "lobstream top"
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        return fail(prog, "rich is not installed: pip install 'lobstream[top]'")
    if args.processes < 1 or not 0.1 <= args.interval <= 3600:
        return fail(prog, "--processes must be at least 1 and --interval in [0.1, 3600]")
    try:
        endpoints = endpoints_of(args)
    except UsageError as ex:
        return fail(prog, str(ex))
    except ConfigError as ex:
        return fail(prog, f"configuration error: {ex}")
    rates = Rates()
    console = Console()
    if args.once:
        rows, failures = collect(endpoints)
        console.print(render(rows, rates, failures, time.time(), endpoints))
        return 0 if len(failures) < len(endpoints) else 1
    try:
        with _keys() as keys, Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                rows, failures = collect(endpoints)
                live.update(render(rows, rates, failures, time.time(), endpoints), refresh=True)
                if _quit_pressed(args.interval, keys):
                    return 0
    except KeyboardInterrupt:
        return 0


COMMANDS = [
    Command("top", "a live table of running flows: state, prices, spread, rates, bars",
            "Show a live table of every product of one or more running flows, read from their "
            "metrics endpoints (start them with --metrics HOST:PORT or run.metrics_addr).\n\n"
            "  lobstream top 127.0.0.1:9464\n"
            "  lobstream top 127.0.0.1:9464 --processes 2   # a 2-process run: ports 9464, 9465",
            _configure, _execute),
]

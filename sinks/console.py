"""Alerts and book status changes as one readable line each, on stdout.

This is what a person watches: a line when a spread widens past the threshold,
when a book crosses or locks, when a book goes invalid or is rebuilt, and (with
``[bars] console = true``) when a bar closes::

    2026-08-09T21:05:48.848Z  SYNCED   coinbase:BTC-USD  snapshot: 18764 bids, 27236 asks
    2026-08-09T21:05:52.101Z  SPREAD   deribit:ETH-9APR21-1950-C  spread 1142.86 bps > 10 bps (...)
    2026-08-09T21:05:53.377Z  INVALID  coinbase:ETH-USD  gap: sequence_num jumped from 14 to 17
    2024-08-08T23:54:20.000Z  BAR      binance:BTCUSDT  10s  O 56995.99 H 57007.41 L 56995.98 ...

When stdout is also a data sink (``sinks`` has ``stdout``), stdout must hold
nothing but JSON lines, so that ``lobstream run ... | jq`` works: alerts are then
written there as their JSON records (``"type": "alert"``), and the human lines
for statuses and bars go to stderr (the statuses and bars themselves are on
stdout already, as data).

Unit of parallelism: each worker writes the records of the products it holds;
every batch is one write of whole lines, flushed. Delivery: at least once across
a recovery restart (what the upstream replays is shown again); nothing to resume.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import List, Optional

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.records import Keyed, Record, to_lines


def format_line(rec: Record) -> str:
    """The console line for an alert or status record."""
    ts = datetime.fromtimestamp(rec["ts_recv"] / 1000.0, timezone.utc)
    when = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    where = f"{rec['venue']}:{rec['product']}"
    if rec["type"] == "alert":
        label = rec["kind"].upper()
        text = rec["detail"]
    else:
        label = rec["state"].upper()
        text = f"{rec['reason']}: {rec['detail']}"
    return f"{when}  {label:<8} {where}  {text}\n"


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.10g}"


def format_bar(rec: Record) -> str:
    """The console line for a closed bar, stamped with the bar's end (exchange time)."""
    interval = rec["interval_s"]
    span = f"{interval / 60:g}m" if interval >= 60 and interval % 60 == 0 else f"{interval:g}s"
    spread = rec["spread_bps_mean"]
    notes = ("" if rec["complete"] else "  (incomplete: input ended)") + \
        (f"  (revision {rec['revision']})" if rec["revision"] else "")
    text = (f"{span}  O {_num(rec['open'])} H {_num(rec['high'])} L {_num(rec['low'])} "
            f"C {_num(rec['close'])}  vol {rec['volume']:.6g} (buy {rec['buy_volume']:.6g} / "
            f"sell {rec['sell_volume']:.6g})  {rec['trades']} trades  spread "
            + ("-" if spread is None else f"{spread:.3g} bps") + notes)
    return format_line({"type": "alert", "kind": "bar", "venue": rec["venue"],
                        "product": rec["product"], "ts_recv": rec["end"], "detail": text})


def _human(rec: Record) -> str:
    return format_bar(rec) if rec["type"] == "bar" else format_line(rec)


class ConsoleSink(DynamicSink[Keyed]):
    """Print alerts, status changes and (if routed here) closed bars for people, one
    line each; with ``json_stdout``, alerts as JSON lines on stdout and the rest on
    stderr (see the module docstring)."""

    def __init__(self, json_stdout: bool = False) -> None:
        self.json_stdout = json_stdout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_ConsolePartition":
        return _ConsolePartition(self.json_stdout)


class _ConsolePartition(StatelessSinkPartition[Keyed]):
    def __init__(self, json_stdout: bool) -> None:
        self._json = json_stdout

    def write_batch(self, items: List[Keyed]) -> None:
        if not self._json:
            sys.stdout.write("".join([_human(rec) for _, rec in items]))
            sys.stdout.flush()
            return
        alerts = [item for item in items if item[1]["type"] == "alert"]
        human = "".join([_human(rec) for _, rec in items if rec["type"] != "alert"])
        if alerts:
            sys.stdout.flush()  # (anything written as text goes first)
            sys.stdout.buffer.write(to_lines(alerts))
            sys.stdout.buffer.flush()
        if human:
            sys.stderr.write(human)
            sys.stderr.flush()

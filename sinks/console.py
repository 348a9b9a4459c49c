"""Alerts and book status changes as one readable line each, on stdout.

This is what a person watches: a line when a spread widens past the threshold,
when a book crosses or locks, when a book goes invalid or is rebuilt, and (with
``[bars] console = true``) when a bar closes::

    2026-08-09T21:05:48.848Z  SYNCED   coinbase:BTC-USD  snapshot: 18764 bids, 27236 asks
    2026-08-09T21:05:52.101Z  SPREAD   deribit:ETH-9APR21-1950-C  spread 1142.86 bps > 10 bps (...)
    2026-08-09T21:05:53.377Z  INVALID  coinbase:ETH-USD  gap: sequence_num jumped from 14 to 17
    2024-08-08T23:54:20.000Z  BAR      binance:BTCUSDT  10s  O 56995.99 H 57007.41 L 56995.98 ...

Product names and details come from exchanges, so every field is passed
through :func:`printable`: a newline, carriage return or terminal escape in a
``detail`` cannot forge a second line or recolour the screen. A record of
another type gets ``TYPE`` and its remaining fields as ``key=value``, and a
missing or broken field a placeholder, so no record can stop the console.

When stdout is also a data sink (``sinks`` has ``stdout``), stdout must hold
nothing but JSON lines, so that ``lobstream run ... | jq`` works: alerts are then
written there as their JSON records (``"type": "alert"``), and the human lines
for statuses and bars go to stderr (the statuses and bars themselves are on
stdout already, as data).

**Unit of parallelism.** A :class:`~bytewax.outputs.DynamicSink`, one partition
per worker, each batch one write of whole lines to the process's stdout (see
:mod:`sinks.stdout`, which also handles a reader that goes away).
**Delivery.** At-least-once (a recovered run prints the replayed epoch's lines
again). **Resume.** A stream: nothing to append to or replace.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Dict, List, Optional

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.records import Keyed, Record, to_lines
from sinks.stdout import write_stdout


def _escapes() -> Dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    # line and paragraph separators, and the bidirectional overrides that can
    # make a terminal show text in another order than it was written
    for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[c] = f"\\u{c:04x}"
    table[ord("\\")] = "\\\\"  # so an escape in the output is always one of ours
    return table


_ESCAPES = _escapes()
#: The fields a line always shows, left out of the ``key=value`` tail.
_SHOWN = frozenset(("type", "venue", "product", "ts_recv"))


def printable(value: object) -> str:
    """``value`` as text on one line: control and line-breaking characters,
    bidirectional overrides and ``\\`` written as backslash escapes."""
    return (value if isinstance(value, str) else str(value)).translate(_ESCAPES)


def _when(ts_ms: object) -> str:
    try:
        ts = datetime.fromtimestamp(float(ts_ms) / 1000.0, timezone.utc)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return "????-??-??T??:??:??.???Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def format_line(rec: Record) -> str:
    """The console line for a record (made for alerts and statuses)."""
    kind = rec.get("type")
    if kind == "alert":
        label, text = rec.get("kind"), printable(rec.get("detail"))
    elif kind == "status":
        label = rec.get("state")
        text = f"{printable(rec.get('reason'))}: {printable(rec.get('detail'))}"
    else:
        label = kind
        text = " ".join(f"{printable(k)}={printable(v)}" for k, v in rec.items() if k not in _SHOWN)
    where = f"{printable(rec.get('venue'))}:{printable(rec.get('product'))}"
    return f"{_when(rec.get('ts_recv'))}  {printable(str(label).upper()):<8} {where}  {text}\n"


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


def _kind(rec: object) -> object:
    return rec.get("type") if isinstance(rec, dict) else None


def _human(rec: object) -> str:
    if not isinstance(rec, dict):
        return format_line({"value": rec})
    if rec.get("type") == "bar":
        try:
            return format_bar(rec)
        except (KeyError, TypeError, ValueError):  # not a bar of ours: shown field by field
            pass
    return format_line(rec)


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
            write_stdout("".join([_human(rec) for _, rec in items]))
            return
        alerts = [rec for _, rec in items if _kind(rec) == "alert"]
        human = "".join([_human(rec) for _, rec in items if _kind(rec) != "alert"])
        if alerts:
            write_stdout(to_lines(alerts))
        if human:
            sys.stderr.write(human)
            sys.stderr.flush()

"""Alerts and book status changes as one readable line each, on stdout.

This is what a person watches: a line when a spread widens past the threshold,
when a book crosses or locks, and when a book goes invalid or is rebuilt::

    2026-08-09T21:05:48.848Z  SYNCED   coinbase:BTC-USD  snapshot: 18764 bids, 27236 asks
    2026-08-09T21:05:52.101Z  SPREAD   deribit:ETH-9APR21-1950-C  spread 1142.86 bps > 10 bps (...)
    2026-08-09T21:05:53.377Z  INVALID  coinbase:ETH-USD  gap: sequence_num jumped from 14 to 17

Product names and details come from exchanges, so every field is passed
through :func:`printable`: a newline, carriage return or terminal escape in a
``detail`` cannot forge a second line or recolour the screen. A record of
another type gets ``TYPE`` and its remaining fields as ``key=value``, and a
missing or broken field a placeholder, so no record can stop the console.

**Unit of parallelism.** A :class:`~bytewax.outputs.DynamicSink`, one partition
per worker, each batch one write to the process's stdout (see
:mod:`sinks.stdout`, which also handles a reader that goes away).
**Delivery.** At-least-once (a recovered run prints the replayed epoch's lines
again). **Resume.** A stream: nothing to append to or replace.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, List

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.records import Keyed, Record
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


class ConsoleSink(DynamicSink[Keyed]):
    """Print alerts and status changes for people, one line each."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_ConsolePartition":
        return _ConsolePartition()


class _ConsolePartition(StatelessSinkPartition[Keyed]):
    def write_batch(self, items: List[Keyed]) -> None:
        text = "".join([format_line(rec if isinstance(rec, dict) else {"value": rec})
                        for _, rec in items])
        write_stdout(text)

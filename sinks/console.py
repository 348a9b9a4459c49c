"""Alerts and book status changes as one readable line each, on stdout.

This is what a person watches: a line when a spread widens past the threshold,
when a book crosses or locks, and when a book goes invalid or is rebuilt::

    2026-08-09T21:05:48.848Z  SYNCED   coinbase:BTC-USD  snapshot: 18764 bids, 27236 asks
    2026-08-09T21:05:52.101Z  SPREAD   deribit:ETH-9APR21-1950-C  spread 1142.86 bps > 10 bps (...)
    2026-08-09T21:05:53.377Z  INVALID  coinbase:ETH-USD  gap: sequence_num jumped from 14 to 17
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import List

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.records import Keyed, Record


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


class ConsoleSink(DynamicSink[Keyed]):
    """Print alerts and status changes for people, one line each."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_ConsolePartition":
        return _ConsolePartition()


class _ConsolePartition(StatelessSinkPartition[Keyed]):
    def write_batch(self, items: List[Keyed]) -> None:
        sys.stdout.write("".join([format_line(rec) for _, rec in items]))
        sys.stdout.flush()

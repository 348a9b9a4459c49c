"""Records as JSON lines on standard output, for piping into other tools."""

from __future__ import annotations

import sys
from typing import List

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.records import Keyed, to_lines


class StdoutSink(DynamicSink[Keyed]):
    """Write keyed records to stdout, one JSON object per line."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_StdoutPartition":
        return _StdoutPartition()


class _StdoutPartition(StatelessSinkPartition[Keyed]):
    def write_batch(self, items: List[Keyed]) -> None:
        out = sys.stdout.buffer
        out.write(to_lines([rec for _, rec in items]))
        out.flush()

"""The flow's store sink: records into the tick store, committed at every epoch end.

**Unit of parallelism.** A :class:`~bytewax.outputs.FixedPartitionedSink` whose
partitions (:mod:`sinks.partitions`) sit on the worker that holds each product's
book: no record crosses a process to reach the store, and each partition-day
has exactly one writer.

**Delivery.** Rows are buffered per partition-day; at each epoch end Bytewax calls
``snapshot()`` on every partition that received data, which writes one Parquet
file per partition-day touched and publishes it in the index (one commit), then
returns the partition's writer id and, per partition-day, the number of its last
index entry. A run that ends commits the rest in ``close()``.

**Resume.** On a restart from Bytewax recovery, ``build_part`` gets that state
back: every commit the partition made after it (epochs whose snapshot was never
stored, which Bytewax will replay) is undone as a new version holding exactly the
files of the snapshot, so the replayed epochs are written once: no duplicates,
nothing lost. Without recovery a restarted live flow continues each day's version
(``append``); a replay (``replace``) writes each day afresh. One window remains: a
partition that dies between its very first commit and Bytewax storing its first
snapshot has no resume state, so a replayed first epoch is written again; a
live feed never replays, so this only concerns replays under recovery.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from bytewax.outputs import StatefulSinkPartition

from sinks.records import Record
from sinks.store.layout import PartitionDay, Root
from sinks.store.schema import KINDS
from sinks.store.writer import APPEND_MODE, StoreWriter
from sinks.partitions import ColocatedSink

log = logging.getLogger("lobstream.store")

#: Partition-days kept in the resume state: a day ends, but bars and late trades
#: of the previous day still arrive just after midnight.
KEEP_DAYS = 2

State = Dict[str, Any]


class StoreSink(ColocatedSink[Record, State]):
    """Write the flow's records (of ``kinds``) into the store at ``root``."""

    def __init__(self, root: str, mode: str = APPEND_MODE, kinds: Tuple[str, ...] = KINDS,
                 max_files: int = 16, max_rows: int = 500_000) -> None:
        self.root = root
        self.mode = mode
        self.kinds = frozenset(kinds)
        self.max_files = max_files
        self.max_rows = max_rows
        Root(root)  # an unusable root fails here, at build time, not in a worker

    def build_part(self, step_id: str, for_part: str,
                   resume_state: Optional[State]) -> "_StorePartition":
        writer = StoreWriter(Root(self.root), self.mode,
                             resume_state["writer"] if resume_state else None,
                             self.max_files, self.max_rows, source=f"flow {step_id}")
        if resume_state:
            positions = {PartitionDay(*p[:4]).rel(): p[4] for p in resume_state["pos"]}
            since = min((p[3] for p in resume_state["pos"]), default=resume_state["since"])
            undone = writer.rewind(positions, since)
            if undone:
                log.info("store %s: undid the unsnapshotted commits of %d partition-days",
                         for_part, undone)
            writer.adopt({PartitionDay(*p[:4]): p[4] for p in resume_state["pos"]})
        return _StorePartition(writer, self.kinds)


class _StorePartition(StatefulSinkPartition[Record, State]):
    def __init__(self, writer: StoreWriter, kinds: frozenset) -> None:
        self._writer = writer
        self._kinds = kinds
        self._since = "9999-12-31"

    def write_batch(self, values: List[Record]) -> None:
        kinds = self._kinds
        self._writer.add([v for v in values if v.get("type") in kinds])

    def snapshot(self) -> State:
        writer = self._writer
        writer.commit()
        pos = writer.position_list(KEEP_DAYS)
        if pos:
            self._since = min(self._since, min(p[3] for p in pos))
        return {"writer": writer.writer, "pos": pos, "since": self._since}

    def close(self) -> None:
        self._writer.commit()


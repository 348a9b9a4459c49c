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
back, and what is right depends on the source:

* ``resume="rewind"``, for sources that replay from their snapshot (partitioned,
  seekable ones: Bytewax's testing source, files, Kafka): every commit the
  partition made after the snapshot (epochs Bytewax will replay) is undone, as a
  new version holding exactly the files of the snapshot, so the replayed epochs
  are written once: no duplicates, nothing lost. One window remains: a partition
  that dies between its very first commit and Bytewax storing its first snapshot
  has no resume state, so its first epoch can be written twice.
* ``resume="keep"`` (the flow's default), for the live websocket source, which
  replays nothing: what was committed stays (rewinding it would lose those rows
  for good) and the partition continues its versions.
* ``mode="replace"`` (replays of captures): lobstream's replay source reads its
  files from the start again when resumed, so a resumed replay, like a fresh
  one, writes each day it touches afresh, whatever ``resume`` says.

Without recovery a restarted live flow continues each day's version (``append``)
and a replay (``replace``) writes each day afresh.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from bytewax.outputs import StatefulSinkPartition

from sinks.records import Record
from sinks.store.layout import PartitionDay, Root
from sinks.store.schema import KINDS
from sinks.partitions import ColocatedSink
from sinks.store.writer import APPEND_MODE, REPLACE_MODE, StoreWriter

log = logging.getLogger("lobstream.store")

#: Partition-days kept in the resume state: a day ends, but bars and late trades
#: of the previous day still arrive just after midnight.
KEEP_DAYS = 2

State = Dict[str, Any]
RESUMES = ("keep", "rewind")


class StoreSink(ColocatedSink[Record, State]):
    """Write the flow's records (of ``kinds``) into the store at ``root``."""

    def __init__(self, root: str, mode: str = APPEND_MODE, kinds: Tuple[str, ...] = KINDS,
                 max_files: int = 16, max_rows: int = 500_000, resume: str = "keep") -> None:
        if resume not in RESUMES:
            raise ValueError(f"store resume {resume!r}; valid choices: {', '.join(RESUMES)}")
        self.root = root
        self.mode = mode
        self.resume = resume
        self.kinds = frozenset(kinds)
        self.max_files = max_files
        self.max_rows = max_rows
        Root(root)  # an unusable root fails here, at build time, not in a worker

    def build_part(self, step_id: str, for_part: str,
                   resume_state: Optional[State]) -> "_StorePartition":
        if self.mode == REPLACE_MODE:
            resume_state = None  # a resumed replay starts again: its days afresh
        writer = StoreWriter(Root(self.root), self.mode,
                             resume_state["writer"] if resume_state else None,
                             self.max_files, self.max_rows, source=f"flow {step_id}")
        if resume_state:
            positions = {PartitionDay(*p[:4]): p[4] for p in resume_state["pos"]}
            if self.resume == "rewind" and positions:
                since = min(pd.date for pd in positions)
                undone = writer.rewind({pd.rel(): seq for pd, seq in positions.items()}, since)
                if undone:
                    log.info("store %s: undid the unsnapshotted commits of %d partition-days",
                             for_part, undone)
            writer.adopt(positions)
        return _StorePartition(writer, self.kinds)


class _StorePartition(StatefulSinkPartition[Record, State]):
    def __init__(self, writer: StoreWriter, kinds: frozenset) -> None:
        self._writer = writer
        self._kinds = kinds

    def write_batch(self, values: List[Record]) -> None:
        kinds = self._kinds
        self._writer.add([v for v in values if v.get("type") in kinds])

    def snapshot(self) -> State:
        writer = self._writer
        writer.commit()
        return {"writer": writer.writer, "pos": writer.position_list(KEEP_DAYS)}

    def close(self) -> None:
        self._writer.commit()


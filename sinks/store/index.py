"""The append-only index of a partition-day: its versions, as of any time.

A version is one committed batch of writes to a (kind, venue, product, date): a
bulk import, a backfill, a compaction, or a flow run (which keeps appending files
to its open version, one commit per epoch). The index of a partition-day is a
directory of immutable entries, one per commit, named ``<seq>-<writer>.json`` so
that they sort in commit order and two writers can never overwrite each other's.
Nothing is ever rewritten or removed; every state the partition-day was ever in
can be rebuilt by folding the entries stamped up to a time.

Entry operations:

* ``open``: a new version supersedes the current one from ``time`` (which gets
  that ``valid_to``). It starts from ``base``'s files (minus ``drop``) or from
  nothing, plus ``files``. A rewrite of a day (bulk import) has no base; a flow
  or backfill continuing a day, and a compaction (``drop`` = the small files, one
  merged file added), have the current version as base.
* ``append``: files added to the open version ``version`` (a flow's epoch commit).
* ``delete``: a logical delete ends the current version; the day reads as empty.

**Audit trail.** Every entry names its ``writer`` (with host and pid) and, for
deletes and undeletes, who (``by``) and why (``reason``). An undelete is an ``open`` whose base is the
deleted version and whose reason says so: the version comes back as a new version
from that moment, and a read as of any time between the delete and the undelete
still returns nothing. :func:`history` lists every version with its validity
interval and the entries that made it, so "who removed this day, when, why, and
what did it hold" is one call.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import orjson

from sinks.store.layout import PartitionDay, Root

OPEN, APPEND, DELETE = "open", "append", "delete"
_HOST = socket.gethostname()


@dataclass
class FileRef:
    """A data file of a version."""

    name: str
    rows: int


@dataclass
class Version:
    number: int
    valid_from: int
    valid_to: Optional[int] = None
    files: List[FileRef] = field(default_factory=list)
    entries: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass
class State:
    """A partition-day folded up to some time."""

    versions: Dict[int, Version] = field(default_factory=dict)
    current: Optional[int] = None
    last_seq: int = -1
    last_time: int = 0

    def files(self) -> List[FileRef]:
        return list(self.versions[self.current].files) if self.current is not None else []


def read_entries(root: Root, pd: PartitionDay) -> List[Dict[str, Any]]:
    """Every entry of ``pd`` in commit order."""
    where = root.index_dir(pd)
    out = []
    for name in root.listdir(where):
        if name.endswith(".json"):
            out.append(orjson.loads(root.read_bytes(f"{where}/{name}")))
    out.sort(key=lambda e: (e["seq"], e["writer"]))
    return out


def fold(entries: Sequence[Dict[str, Any]], as_of: Optional[int] = None,
         upto_seq: Optional[int] = None) -> State:
    """The state after every entry stamped at or before ``as_of`` (ns) and numbered
    at most ``upto_seq`` (None: no limit)."""
    st = State()
    for e in entries:
        if (as_of is not None and e["time"] > as_of) or \
                (upto_seq is not None and e["seq"] > upto_seq):
            break
        apply(st, e)
    return st


def apply(st: State, e: Dict[str, Any]) -> None:
    """Fold one more entry into ``st``."""
    t = e["time"]
    st.last_seq, st.last_time = max(st.last_seq, e["seq"]), max(st.last_time, t)
    files = [FileRef(f["name"], f["rows"]) for f in e.get("files", ())]
    op = e["op"]
    target = e.get("version")
    if op == OPEN:
        base = st.versions.get(e["base"]) if e.get("base") is not None else None
        drop = set(e.get("drop", ()))
        kept = [f for f in base.files if f.name not in drop] if base else []
        if st.current is not None:
            st.versions[st.current].valid_to = t
        st.versions[target] = Version(target, t, None, kept + files)
        st.current = target
    elif op == APPEND:
        if target is None or st.current != target:
            return  # a superseded version's late commit stays invisible
        st.versions[target].files.extend(files)
    elif op == DELETE:
        target = st.current
        if target is not None:
            st.versions[target].valid_to = t
        st.current = None
    if target in st.versions:
        st.versions[target].entries.append(e)


def history(root: Root, pd: PartitionDay) -> List[Version]:
    """Every version of ``pd`` with its validity and the entries that made it."""
    return sorted(fold(read_entries(root, pd)).versions.values(), key=lambda v: v.number)


class IndexWriter:
    """Appends entries for one partition-day on behalf of one writer.

    Stamps are strictly increasing per partition-day (a clock step backwards
    cannot reorder commits), and each entry is published with one atomic write
    after the data files it names are already in place, so a reader that sees an
    entry can read all of its files."""

    def __init__(self, root: Root, pd: PartitionDay, writer: str) -> None:
        self.root = root
        self.pd = pd
        self.writer = writer
        self.entries = read_entries(root, pd)
        self.state = fold(self.entries)

    def next_version(self) -> int:
        return max(self.state.versions, default=0) + 1

    def commit(self, op: str, version: Optional[int] = None, files: Sequence[FileRef] = (),
               **extra: Any) -> Dict[str, Any]:
        seq = self.state.last_seq + 1
        stamp = max(time.time_ns(), self.state.last_time + 1)
        entry: Dict[str, Any] = {"seq": seq, "time": stamp, "op": op, "writer": self.writer,
                                 "host": _HOST, "pid": os.getpid(), "version": version,
                                 "files": [{"name": f.name, "rows": f.rows} for f in files]}
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.root.write_atomic(f"{self.root.index_dir(self.pd)}/{seq:09d}-{self.writer}.json",
                               orjson.dumps(entry))
        self.entries.append(entry)
        apply(self.state, entry)
        return entry

"""JSON-lines files, one per product: ``{dir}/{venue}_{product}.jsonl``.

A product's records are all produced on the one worker that holds its book, so
each file has exactly one writer, in any number of workers or processes, and
needs no locking or cross-worker exchange. It also makes outputs directly
comparable between a 1-process and a 2-process run.

Each batch goes out as one ``write`` of whole lines followed by a flush, so a
reader (or a crash) never sees half a record after a complete one. Files are
appended to: a restarted run continues them.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Dict, List, Union

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.records import Keyed, to_lines


class JsonlSink(DynamicSink[Keyed]):
    """Write keyed records to per-product JSON-lines files under ``directory``."""

    def __init__(self, directory: Union[str, Path]) -> None:
        self.directory = Path(directory)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_JsonlPartition":
        self.directory.mkdir(parents=True, exist_ok=True)
        return _JsonlPartition(self.directory)


class _JsonlPartition(StatelessSinkPartition[Keyed]):
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._files: Dict[str, IO[bytes]] = {}

    def write_batch(self, items: List[Keyed]) -> None:
        by_product: Dict[str, List[Keyed]] = {}
        for item in items:
            rec = item[1]
            by_product.setdefault(f"{rec['venue']}_{rec['product']}", []).append(item)
        for name, group in by_product.items():
            f = self._files.get(name)
            if f is None:
                f = self._files[name] = open(self._dir / (name + ".jsonl"), "ab")
            f.write(to_lines(group))
            f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

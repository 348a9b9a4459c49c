"""Where the store's files live: the root, the hive-style paths, atomic writes.

The root is a local directory or an object-store URI. pyarrow resolves
``s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http`` (and ``gs://``,
``hdfs://``) itself; any other scheme fsspec knows (``az://``, ``abfs://``,
``memory://``) goes through fsspec wrapped as a pyarrow filesystem, so the rest
of the store sees one interface.

Layout under the root::

    kind=trade/venue=coinbase/product=BTC-USD/date=2026-08-09/<writer>-<seq>.parquet
    _index/kind=trade/venue=coinbase/product=BTC-USD/date=2026-08-09/<seq>-<writer>.json

Data files are immutable once visible. Locally each is written to ``_tmp/`` and
renamed into place after an fsync (a rename within one filesystem is atomic, so a
reader or a crash never sees half a file); on an object store a single PUT is
already atomic, so objects are written in place. Leftovers in ``_tmp/`` are a
crashed writer's and never referenced by the index.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import List, NamedTuple, Tuple
from urllib.parse import quote, unquote

import pyarrow.fs as pafs

INDEX_DIR = "_index"
TMP_DIR = "_tmp"
#: Path components are kept to a portable set; anything else is percent-encoded,
#: so a product name can never climb out of its directory.
_SAFE = re.compile(r"[A-Za-z0-9._-]+")


class PartitionDay(NamedTuple):
    """One (kind, venue, product, date): the unit of versions."""

    kind: str
    venue: str
    product: str
    date: str  # YYYY-MM-DD (UTC)

    def rel(self) -> str:
        return "/".join(f"{k}={component(v)}" for k, v in zip(self._fields, self))


def component(value: str) -> str:
    """``value`` as one safe path component (percent-encoded where needed)."""
    if _SAFE.fullmatch(value) and value not in (".", ".."):
        return value
    return quote(value, safe="").replace(".", "%2E")


def uncomponent(text: str) -> str:
    return unquote(text)


def day_of(ms: float) -> str:
    """The UTC date of an epoch-ms time."""
    return datetime.fromtimestamp(ms / 1000.0, timezone.utc).strftime("%Y-%m-%d")


def days_before(date: str, days: int) -> str:
    """The date ``days`` before ``date`` (both YYYY-MM-DD)."""
    return (datetime.strptime(date, "%Y-%m-%d") - timedelta(days=days)).strftime("%Y-%m-%d")


def day_bounds(date: str) -> Tuple[float, float]:
    """``[start, end)`` of a UTC date in epoch ms."""
    start = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp() * 1000
    return start, start + 86_400_000.0


def new_writer_id() -> str:
    return uuid.uuid4().hex[:12]


class Root:
    """A store root: its filesystem and base path, with the few operations the
    store needs (list, read, atomic write)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.base = _resolve(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/")] + [p for p in parts if p])

    def data_dir(self, pd: PartitionDay) -> str:
        return self.path(pd.rel())

    def index_dir(self, pd: PartitionDay) -> str:
        return self.path(INDEX_DIR, pd.rel())

    def listdir(self, path: str) -> List[str]:
        """Names in ``path`` (empty when it does not exist)."""
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def subdirs(self, path: str) -> List[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes) -> None:
        """Make ``path`` appear whole or not at all."""
        if not self.local:
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        tmp_dir = self.path(TMP_DIR)
        os.makedirs(tmp_dir, exist_ok=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def partition_days(self, kind: str, venue: str, product: str) -> List[str]:
        """Dates with an index for (kind, venue, product)."""
        where = self.path(INDEX_DIR, f"kind={component(kind)}", f"venue={component(venue)}",
                          f"product={component(product)}")
        return [d[len("date="):] for d in self.subdirs(where) if d.startswith("date=")]

    def walk_partitions(self) -> List[PartitionDay]:
        """Every partition-day that has an index."""
        out: List[PartitionDay] = []
        top = self.path(INDEX_DIR)
        for k in self.subdirs(top):
            for v in self.subdirs(f"{top}/{k}"):
                for p in self.subdirs(f"{top}/{k}/{v}"):
                    for d in self.subdirs(f"{top}/{k}/{v}/{p}"):
                        out.append(PartitionDay(*(uncomponent(x.split("=", 1)[1])
                                                  for x in (k, v, p, d))))
        return out


def _resolve(uri: str) -> Tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        path = os.path.abspath(uri)
        os.makedirs(path, exist_ok=True)
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(uri)
    except ValueError:  # pyarrow.ArrowInvalid: a scheme pyarrow does not know
        pass
    import fsspec  # optional: only for schemes pyarrow lacks
    fs, path = fsspec.core.url_to_fs(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path

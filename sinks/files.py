"""Whole-line appends to many files through a bounded number of descriptors.

The machinery under lobstream's file sinks, which all share these semantics:

* **Whole lines.** Each :meth:`LineFiles.append` is one ``write`` of whole lines
  (repeated only if the kernel writes short, which for a regular file happens
  only at a limit, just before it fails). If it fails part-way, the file is cut
  back to its size before the write, so no partial line stays. A file this run
  opens first in ``append`` mode that ends in a partial line (left by a crash of
  an earlier run in the middle of a write) is cut back to its last whole line.
* **Mode**: ``append`` (the default) continues the files of an earlier run;
  ``replace`` truncates each file the first time this run opens it (later
  reopens, after the descriptor was closed to bound open files, append). With
  Bytewax recovery use ``append``: a resumed run in ``replace`` mode would empty
  the files of everything before the resumed epoch.
* **Bounded open files.** At most ``max_open`` descriptors per :class:`LineFiles`
  (per worker), least recently written closed first, so 3,000 products replay
  under ``ulimit -n 1024``. A miss (close one file, open another) measured 2-3 us
  (``benchmarks/jsonl_sink.py``), about what serialising and writing two summary
  records costs; a worker cycling through more products than ``max_open`` pays
  it on every write.
* **Write errors pause; they do not stop the run.** On a failed write (disk full
  ENOSPC, file too large EFBIG, EIO, a read-only or removed directory) one ERROR
  line names the path and the error, and the worker retries every
  :data:`RETRY_SECONDS` until the write succeeds, then logs one line saying how
  long it paused (why pause rather than stop: :mod:`sinks.jsonl`). If a stop is
  requested while paused, the write is tried once more and then abandoned:
  :func:`sources.runtime.shutdown.fail` logs how many records were not written
  and where, and the process exits non-zero.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Set, Union

from sources.runtime import shutdown

log = logging.getLogger("lobstream.sinks")

MODES = ("append", "replace")
DEFAULT_MAX_OPEN = 64
#: Seconds between attempts while a write fails.
RETRY_SECONDS = 1.0
#: Bytes read per step when looking for the last whole line of a damaged file.
_TAIL_CHUNK = 1 << 16
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


def check_options(mode: str, max_open: int, prefix: str = "") -> None:
    """Raise ``ValueError`` (one line, option names after ``prefix``) unless ``mode``
    and ``max_open`` can work."""
    if mode not in MODES:
        raise ValueError(f"{prefix}mode={mode!r}; valid choices: {', '.join(MODES)}")
    if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
        raise ValueError(f"{prefix}max_open={max_open!r}: expected an integer >= 1")


def check_output_dir(path: Union[str, Path]) -> None:
    """Create the output directory ``path`` if needed and check that files can be
    created in it; raise ``ValueError`` with one line saying why not.

    It probes with a real file rather than ``os.access``, which answers yes for
    root wherever the mode bits say no, and misses what only the filesystem
    knows.
    """
    where = f"output directory {str(path)!r}"
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{where} is a file, not a directory")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{where}: its parent {str(parent)!r} is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise ValueError(f"{where} cannot be created ({reason(ex)})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=p, prefix=".lobstream-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as ex:
        raise ValueError(f"{where} is not writable ({reason(ex)})") from None


def reason(ex: OSError) -> str:
    """``ENOSPC: No space left on device``: the errno name makes a log line searchable."""
    name = errno.errorcode.get(ex.errno or 0, "error")
    return f"{name}: {ex.strerror or ex}"


class LineFiles:
    """Appends whole lines to files by path, one writer per file (see the module
    docstring for the semantics). Not thread-safe: one per sink partition."""

    def __init__(self, mode: str = "append", max_open: int = DEFAULT_MAX_OPEN,
                 label: str = "sink") -> None:
        check_options(mode, max_open)
        self._replace = mode == "replace"
        self._max_open = max_open
        self._label = label
        self._fds: "OrderedDict[str, int]" = OrderedDict()
        #: Paths this run has opened: they are neither truncated nor repaired again.
        self._opened: Set[str] = set()
        #: Path -> size to cut the file back to before its next write.
        self._cut: Dict[str, int] = {}
        #: Records abandoned after a stop, by path, and how many were reported.
        self._lost: Dict[str, int] = {}
        self._reported = 0
        self._gave_up = False
        #: Files opened (first opens and reopens after eviction), for measurement.
        self.opens = 0

    @property
    def open_files(self) -> int:
        return len(self._fds)

    def append(self, path: str, data: bytes, records: int) -> None:
        """Append ``data`` (whole lines holding ``records`` records) to ``path``,
        pausing while it cannot be written."""
        try:
            self._write(path, data)
        except OSError as ex:
            self._pause(path, data, records, ex)

    def close(self) -> None:
        for path, fd in self._fds.items():
            if path in self._cut:  # a failed write whose cut-back failed too
                try:
                    self._cut_back(path, fd)
                except OSError as ex:
                    log.error("%s: %s keeps a partial last line (%s); the next run cuts it",
                              self._label, path, reason(ex))
            _close(fd)
        self._fds.clear()
        lost = sum(self._lost.values())
        if lost > self._reported:
            paths = sorted(self._lost, key=self._lost.__getitem__, reverse=True)
            shown = ", ".join(f"{p} ({self._lost[p]})" for p in paths[:5])
            more = f" and {len(paths) - 5} more files" if len(paths) > 5 else ""
            log.error("%s: %d records in all were not written: %s%s",
                      self._label, lost, shown, more)
            self._reported = lost

    def _write(self, path: str, data: bytes) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._open(path)
        else:
            self._fds.move_to_end(path)
        if self._cut:
            self._cut_back(path, fd)
        written = os.write(fd, data) if data else 0
        if written == len(data):
            return
        try:
            view = memoryview(data)
            while written < len(data):
                written += os.write(fd, view[written:])
        except OSError:
            self._cut[path] = os.lseek(fd, 0, os.SEEK_CUR) - written
            try:
                self._cut_back(path, fd)
            except OSError:
                pass  # kept in _cut: the next attempt cuts first
            raise

    def _cut_back(self, path: str, fd: int) -> None:
        size = self._cut.get(path)
        if size is not None:
            os.ftruncate(fd, size)
            del self._cut[path]

    def _open(self, path: str) -> int:
        while len(self._fds) >= self._max_open:
            _close(self._fds.popitem(last=False)[1])
        first = path not in self._opened
        fd = os.open(path, _FLAGS | (os.O_TRUNC if first and self._replace else 0), 0o644)
        if first and not self._replace:
            try:
                self._find_partial_tail(path, fd)
            except OSError:
                _close(fd)  # still a first open next time, so the check is repeated
                raise
        self.opens += 1
        self._fds[path] = fd
        self._opened.add(path)
        return fd

    def _find_partial_tail(self, path: str, fd: int) -> None:
        """Mark a partial last line (from an interrupted earlier run) to be cut."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # fd is write-only
        try:
            if os.pread(reader, 1, size - 1) == b"\n":
                return
            end = _after_last_newline(reader, size)
        finally:
            os.close(reader)
        self._cut[path] = end
        log.warning("%s: %s ends in a partial line (%d bytes, from an interrupted run); "
                    "cutting it off", self._label, path, size - end)

    def _pause(self, path: str, data: bytes, records: int, error: OSError) -> None:
        if self._gave_up:  # already stopping after a failure: one attempt per write
            self._lost[path] = self._lost.get(path, 0) + records
            return
        paused = time.monotonic()
        if not shutdown.requested():
            log.error("%s: cannot write %s (%s); pausing this worker, retrying every %g s",
                      self._label, path, reason(error), RETRY_SECONDS)
            while True:
                stopping = shutdown.wait(RETRY_SECONDS)
                try:
                    self._write(path, data)
                except OSError as ex:
                    error = ex
                    if stopping:
                        break
                    continue
                log.warning("%s: %s written again after %.1f s paused; resuming",
                            self._label, path, time.monotonic() - paused)
                return
        self._gave_up = True
        self._lost[path] = self._reported = records
        shutdown.fail(f"{self._label}: gave up on {path} after {time.monotonic() - paused:.1f} s "
                      f"paused, a stop being requested ({reason(error)}): {records} records "
                      "not written")


def _after_last_newline(fd: int, size: int) -> int:
    """The offset just after the last newline before ``size`` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline != -1:
            return start + newline + 1
        end = start
    return 0


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as ex:  # nothing is buffered here, so nothing is lost
        log.warning("closing a sink file failed (%s)", reason(ex))

"""Records as JSON lines on standard output, for piping into other tools.

**Unit of parallelism.** A :class:`~bytewax.outputs.DynamicSink`: one partition
per worker, all writing to their process's stdout. Each batch is one ``write``
and ``flush`` under the stream's lock, so within a process workers' lines
interleave only as whole batches. In a multi-process run each process writes its
own stdout; if several share one pipe, a batch larger than ``PIPE_BUF`` (4 KiB)
may interleave with another process's mid-line: use the ``jsonl`` sink there.

**Delivery.** At-least-once: with Bytewax recovery, the records of the epoch
being replayed after a restart are written again.

**Resume.** A stream has nothing to append to or replace; the shell decides
(``>>`` appends, ``>`` replaces).

**A reader that goes away** (``lobstream ... | head``) is the normal end of a
pipeline, not an error: the sink stops writing, points stdout at ``/dev/null``
(so that no later write to stdout, Python's own flush at exit included, can fail
again and print "Exception ignored ... BrokenPipeError"), requests a clean stop,
and the run exits 0. Any other write error (stdout
redirected to a full disk) cannot be paused and retried like a file's, since a
stream cannot be cut back to its last whole line: the run fails with one line
and exit status 1.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO, Any, List, Union

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.files import reason
from sinks.records import Keyed, to_lines
from sources.runtime import shutdown

log = logging.getLogger("lobstream.sinks")

_lock = threading.Lock()
_closed = False


def write_stdout(data: Union[bytes, str]) -> None:
    """Write ``data`` to stdout and flush it; after the reader went away, drop it.

    Bytes go to the binary layer; text goes to ``sys.stdout`` itself (which a
    caller may have redirected), made encodable first: what the stream's encoding
    cannot hold is written as a backslash escape instead of raising.
    """
    if _closed:
        return
    try:
        if isinstance(data, bytes):
            out: IO[Any] = sys.stdout.buffer
        else:
            out = sys.stdout
            encoding = getattr(out, "encoding", None) or "utf-8"
            data = data.encode(encoding, "backslashreplace").decode(encoding)
        out.write(data)
        out.flush()
    except OSError as ex:
        _stop_writing(ex)


def _stop_writing(ex: OSError) -> None:
    global _closed
    with _lock:
        if _closed:
            return
        _closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # stdout is not a file descriptor (replaced in-process)
            pass
    if isinstance(ex, (BrokenPipeError, ConnectionResetError)):
        log.info("stdout: the reader closed the pipe; stopping (exit status 0)")
        shutdown.request()
    else:
        shutdown.fail(f"stdout: cannot write ({reason(ex)}); stopping")


class StdoutSink(DynamicSink[Keyed]):
    """Write records to stdout, one JSON object per line."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_StdoutPartition":
        return _StdoutPartition()


class _StdoutPartition(StatelessSinkPartition[Keyed]):
    def write_batch(self, items: List[Keyed]) -> None:
        write_stdout(to_lines([rec for _, rec in items]))

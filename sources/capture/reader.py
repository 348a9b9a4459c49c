"""Reading captures from files: header check, bounded lines, damaged ends, bad lines.

A capture is untrusted input (it may come from another tool, a disk that filled
up, or a recorder killed with ``kill -9``), so every problem is one of three things:

* **not a capture at all** (empty file, README, a recorder dump that was never
  converted, gzip that is not gzip): :class:`NotACaptureError`, raised by
  :func:`read_capture` before it yields anything, naming the file and the fix;
* **a bad line** (see :class:`~sources.capture.codec.BadLine` kinds: ``json``,
  ``not_object``, ``ts``, ``venue``, ``stream``, ``dir``, ``url``, ``frame``,
  ``too_deep``, ``too_long``, ``truncated``): counted in a :class:`CaptureReport`,
  logged once per kind with a bounded, escaped sample, and skipped;
* **a damaged end** (gzip without its trailer, garbage after the last member): every
  complete line before it is read, then one warning.

Files are gzip when they start with the gzip magic bytes, whatever their name, and
concatenated gzip members read as one file.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections import Counter
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

from sources.capture.codec import (
    SKIP, BadLine, CaptureFrame, LineParser, NotACapture, head_key, parse_header, sample,
)

log = logging.getLogger("lobstream.capture")

PathLike = Union[str, Path]

#: Longest line read. Websocket frames are capped at 64 MiB, and a non-JSON frame
#: stored as a JSON string can grow by escaping; anything longer is not a frame.
MAX_LINE_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
CAPTURE_SUFFIXES = (".jsonl", ".jsonl.gz")
_GZIP_MAGIC = b"\x1f\x8b"
_CONVERT_HINT = "python -m sources.capture.convert INPUT OUTPUT.jsonl.gz"


class NotACaptureError(ValueError):
    """A file that is not a lobstream capture; the message is one line naming the
    file, the reason and what to do."""


class StreamInfo(NamedTuple):
    """What :func:`list_streams` knows of one stream without reading its frames."""

    venue: str
    files: Tuple[Path, ...]  # in the order given (recorder names sort in time order)
    first_ts: float          # epoch ms of its first frame in the first file


class CaptureReport:
    """Problems met while reading captures: ``counts`` per kind; each bad-line kind
    is logged once (with a sample), each damaged end once per file. One report may
    be shared by many reads so that a replay logs each kind once overall."""

    def __init__(self, logger: Optional[logging.Logger] = log) -> None:
        self.counts: Counter = Counter()
        self._logger = logger
        self._logged: Set[str] = set()

    def bad_line(self, path: Path, lineno: int, bad: BadLine, line: bytes) -> None:
        self.counts[bad.kind] += 1
        if self._logger is not None and bad.kind not in self._logged:
            self._logged.add(bad.kind)
            self._logger.warning("%s:%d: skipped a bad capture line (%s: %s): %s "
                                 "(further %s lines are counted, not logged)",
                                 _shown(path), lineno, bad.kind, bad.detail, sample(line),
                                 bad.kind)

    def damaged_end(self, path: Path, lineno: int, why: str) -> None:
        self.counts["damaged_end"] += 1
        if self._logger is not None:
            self._logger.warning("%s: %s after line %d; the complete lines before it were "
                                 "read (a recorder killed mid-write leaves this)",
                                 _shown(path), why, lineno)


def _shown(path: PathLike) -> str:
    """A path as it may appear in a log line or error: control characters escaped."""
    return sample(str(path).encode("utf-8", "surrogateescape"), 300)


def _not_a_capture(path: Path, why: str) -> NotACaptureError:
    return NotACaptureError(f"{_shown(path)} is not a lobstream capture ({why}); if it is "
                            f"another recorder's file, convert it: {_CONVERT_HINT}")


def _open(path: Path) -> IO[bytes]:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _open_checked(path: Path) -> Tuple[IO[bytes], dict]:
    """Open a capture and read its header, or raise NotACaptureError."""
    if path.is_dir():
        raise _not_a_capture(path, "it is a directory")
    f = _open(path)
    try:
        first = f.readline(MAX_HEADER_BYTES)
    except (EOFError, zlib.error, gzip.BadGzipFile) as ex:
        f.close()
        raise _not_a_capture(path, f"unreadable compressed data: {ex}") from None
    except BaseException:
        f.close()
        raise
    if not first.strip():
        f.close()
        raise _not_a_capture(path, "it is empty" if not first else "its first line is blank")
    try:
        header = parse_header(first)
    except NotACapture as ex:
        f.close()
        raise _not_a_capture(path, str(ex)) from None
    return f, header


def read_header(path: PathLike) -> dict:
    """The header of a capture; raises NotACaptureError (for checks at start)."""
    f, header = _open_checked(Path(path))
    f.close()
    return header


def _lines(f: IO[bytes], path: Path, report: CaptureReport) -> Iterator[Tuple[int, bytes, bool]]:
    """``(line number, line without its ending, ended by a newline)`` after the header."""
    lineno = 1
    with f:
        while True:
            try:
                line = f.readline(MAX_LINE_BYTES)
            except EOFError:
                report.damaged_end(path, lineno, "the compressed data ends early (no gzip end marker)")
                return
            except (zlib.error, gzip.BadGzipFile) as ex:
                report.damaged_end(path, lineno, f"the compressed data is damaged ({ex})")
                return
            if not line:
                return
            lineno += 1
            if line.endswith(b"\n"):
                yield lineno, line.rstrip(b"\r\n"), True
            elif len(line) < MAX_LINE_BYTES:
                yield lineno, line, False  # the last line: EOF came before its newline
                return
            else:
                report.bad_line(path, lineno, BadLine("too_long", "line longer than "
                                                      f"{MAX_LINE_BYTES} bytes"), line)
                while line and not line.endswith(b"\n"):  # drop the rest, bounded reads
                    try:
                        line = f.readline(MAX_LINE_BYTES)
                    except (EOFError, zlib.error, gzip.BadGzipFile):
                        return


def read_capture(path: PathLike, streams: Optional[Iterable[str]] = None, *,
                 report: Optional[CaptureReport] = None,
                 validate: bool = True) -> Iterator[CaptureFrame]:
    """The frames of one capture, in file order.

    The header is checked at the call (NotACaptureError), the frames are read as
    the iterator is consumed. ``streams``: yield only these streams' frames; other
    lines are skipped after reading their head. ``report`` collects bad lines
    (a fresh one, logging to ``lobstream.capture``, if None). ``validate``: see
    :class:`~sources.capture.codec.LineParser`.
    """
    path = Path(path)
    f, _ = _open_checked(path)
    return _frames(f, path, LineParser(streams, validate), report or CaptureReport())


def _frames(f: IO[bytes], path: Path, parser: LineParser,
            report: CaptureReport) -> Iterator[CaptureFrame]:
    for lineno, line, ended in _lines(f, path, report):
        if not line.strip():
            continue
        got = parser.parse(line)
        if isinstance(got, CaptureFrame):
            yield got
        elif isinstance(got, BadLine):
            if not ended:
                got = BadLine("truncated", "last line cut short (no newline, not JSON)")
            report.bad_line(path, lineno, got, line)


def frame_lines(path: PathLike) -> Iterator[bytes]:
    """The undecoded lines after the header (blank lines left out), for tools that
    slice lines themselves; the header is checked at the call."""
    path = Path(path)
    f, _ = _open_checked(path)
    return (line for _, line, _ in _lines(f, path, CaptureReport()) if line.strip())


def capture_files(paths: Iterable[PathLike]) -> List[Path]:
    """Files as given, directories expanded into their captures sorted by name
    (the recorder's names sort in time order). A missing path is FileNotFoundError."""
    files: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir()
                                if q.is_file() and q.name.endswith(CAPTURE_SUFFIXES)))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"capture {_shown(p)} does not exist")
    return files


def list_streams(paths: Sequence[PathLike]) -> Dict[str, StreamInfo]:
    """Per stream: venue, the files holding it and its first ts, from line heads only.

    Checks every file's header (NotACaptureError). Bad lines are skipped without a
    word here: :func:`read_capture` reports them when the frames are read.
    """
    found: Dict[str, Tuple[str, List[Path], float]] = {}
    quiet = CaptureReport(logger=None)
    for path in capture_files(paths):
        f, _ = _open_checked(path)
        parser = LineParser(validate=False)
        in_file: Set[str] = set()
        known: Set[bytes] = set()  # heads already read in this file: the line adds nothing
        for _, line, ended in _lines(f, path, quiet):
            key = head_key(line) if ended else None
            if key is not None and key in known:
                continue
            if not line.strip():
                continue
            head = parser.head(line) if ended else parser.parse(line)
            if head is SKIP or isinstance(head, BadLine):
                continue
            if isinstance(head, CaptureFrame):  # a last line: counts only if complete
                head = (head.ts, head.venue, head.stream)
            ts, venue, stream = head
            if key is not None:
                known.add(key)
            if stream in in_file:
                continue
            in_file.add(stream)
            if stream in found:
                found[stream][1].append(path)
            else:
                found[stream] = (venue, [path], ts)
    return {s: StreamInfo(v, tuple(files), ts) for s, (v, files, ts) in found.items()}

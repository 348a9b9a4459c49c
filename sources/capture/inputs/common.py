"""What every input reader shares: the frame it yields, opening compressed
recorder files as text with a byte meter for progress, and small parsers."""

from __future__ import annotations

import gzip
import io
import zlib
from collections import Counter
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple, Optional

import orjson

from sources.capture.codec import plausible_ts

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class ConvertError(Exception):
    """A problem with the input or the options, reported as one line."""


class Frame(NamedTuple):
    """One frame read from a recorder file; ``ts`` in epoch ms, ``data`` verbatim;
    ``url`` is the request of a ``rest`` frame."""

    ts: float
    stream: str
    direction: str
    data: str
    url: Optional[str] = None


class Meter:
    """How far into its file an input reader is (compressed bytes), for progress."""

    def __init__(self, raw: Optional[IO[bytes]] = None, size: int = 0) -> None:
        self.raw = raw
        self.size = size

    @property
    def done(self) -> int:
        try:
            return self.raw.tell() if self.raw is not None and not self.raw.closed else self.size
        except (OSError, ValueError):
            return 0


def _open_text(path: Path, meter: Meter) -> IO[str]:
    """Open a recorder file as UTF-8 text, decompressing gzip or zstd by content."""
    raw: IO[bytes] = open(path, "rb")
    magic = raw.read(4)
    raw.seek(0)
    meter.raw, meter.size = raw, path.stat().st_size
    if magic.startswith(_GZIP_MAGIC):
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    elif magic == _ZSTD_MAGIC or path.suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raw.close()
            raise ConvertError(
                f"{path}: reading .zst needs the optional zstandard package "
                "(pip install 'lobstream[convert]'), or decompress it first with zstd -d"
            ) from None
        stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    else:
        stream = raw
    return io.TextIOWrapper(stream, encoding="utf-8")  # type: ignore[arg-type]


def lines(path: Path, skipped: Counter, meter: Optional[Meter] = None) -> Iterator[str]:
    """The non-blank lines of a recorder file without their line endings; blank
    lines are counted as ``blank`` in ``skipped``.

    A compressed file cut short (a recorder killed mid-write) ends the lines
    early and counts ``cut_off`` in ``skipped``; text that is not UTF-8 is a
    ConvertError naming the line.
    """
    meter = meter or Meter()
    n = 0
    with _open_text(path, meter) as f:
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield line.rstrip("\r\n")
                else:
                    skipped["blank"] += 1
        except (EOFError, zlib.error, gzip.BadGzipFile):
            skipped["cut_off"] += 1
        except UnicodeDecodeError:
            raise ConvertError(f"{path}: line {n + 1} is not UTF-8 text; "
                               "is this a recorder's text file?") from None
        finally:
            raw = meter.raw
            meter.raw = None
            if raw is not None:
                raw.close()


def first_lines(path: Path, limit: int) -> list[str]:
    """Up to ``limit`` non-blank lines from the start of ``path``, for detection."""
    out: list[str] = []
    for line in lines(path, Counter()):
        out.append(line)
        if len(out) >= limit:
            break
    return out


def base_name(path: Path) -> str:
    """The connection name a recorder gave the file: no compression or rotation suffix."""
    name = path.name
    for ext in (".zst", ".gz", ".jsonl", ".json"):
        name = name.removesuffix(ext)
    stem, _, rotation = name.rpartition(".")
    return stem if stem and rotation.isdigit() else name


def loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def ms(seconds: Any) -> Optional[float]:
    """Epoch seconds (number or numeric text) to epoch ms rounded to the
    microsecond the recorders resolve; None unless a plausible capture time."""
    if isinstance(seconds, bool):
        return None
    try:
        value = round(float(seconds) * 1000.0, 3)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if plausible_ts(value) is None else None


class Detected(NamedTuple):
    """What the first lines of a file say about its venue: ``venue`` when it is
    one lobstream knows, ``label`` the recorder's own name for the exchange (host
    or exchange id), for the error when the venue is unknown or not replayable."""

    venue: Optional[str]
    label: Optional[str] = None

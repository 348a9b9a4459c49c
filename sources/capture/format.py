"""lobstream's capture format: raw exchange frames as JSON lines.

One header line, then one line per frame::

    {"lobstream_capture": 1, "source": "...", "created": 1786309548026.3}
    {"ts": 1786309548483.587, "venue": "coinbase", "stream": "coinbase:BTC-USD", "dir": "recv", "msg": {...}}
    {"ts": 1786309548501.002, "venue": "deribit", "stream": "deribit:ws-1", "dir": "recv", "raw": "{not json"}

* ``ts``: local receive (or send) time, epoch milliseconds.
* ``stream``: the connection the frame travelled on. Connection-level counters
  (Coinbase ``sequence_num``) are only meaningful within one stream, so replay keeps
  streams apart. lobstream's live sources use one connection per product, so their
  captures have one stream per product.
* ``dir``: ``recv`` (from the exchange) or ``send`` (our subscribe messages).
* ``msg``: the frame itself, embedded verbatim as JSON, so a reader parses each line
  once instead of decoding a JSON string and then the JSON inside it. A frame that is
  not valid JSON is kept verbatim as a string under ``raw`` instead, so malformed
  input can be replayed too.

Files ending in ``.gz`` are read and written gzip-compressed.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple, Optional, Union

import orjson

FORMAT_VERSION = 1


class CaptureFrame(NamedTuple):
    """One captured frame. ``msg`` is the decoded JSON, or None when ``raw`` holds
    a frame that was not valid JSON."""

    ts: float
    venue: str
    stream: str
    dir: str
    msg: Any
    raw: Optional[str]


def _open(path: Union[str, Path], mode: str) -> IO[bytes]:
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "b")  # type: ignore[return-value]
    return open(path, mode + "b")


def frame_lines(path: Union[str, Path]) -> Iterator[bytes]:
    """The undecoded frame lines of a capture, after checking its header.

    Readers that only want some streams look at a line's head before paying for
    decoding all of it (a deep-book snapshot line is several MB).
    """
    with _open(path, "r") as f:
        header = orjson.loads(f.readline() or b"{}")
        if header.get("lobstream_capture") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: not a lobstream capture (first line must be a header with "
                f'"lobstream_capture": {FORMAT_VERSION}); convert recorder files with '
                "python -m sources.capture.convert"
            )
        for line in f:
            if line.strip():
                yield line


def read_capture(path: Union[str, Path]) -> Iterator[CaptureFrame]:
    """Yield the frames of a capture in file order."""
    for line in frame_lines(path):
        d = orjson.loads(line)
        yield CaptureFrame(d["ts"], d["venue"], d["stream"], d.get("dir", "recv"),
                           d.get("msg"), d.get("raw"))


class CaptureWriter:
    """Append frames to a capture; each frame is one ``write`` of one whole line,
    so an interrupted recorder never leaves a partial line behind a complete one."""

    def __init__(self, path: Union[str, Path], source: str = "lobstream recorder") -> None:
        self._f: IO[bytes] = _open(path, "w")
        header = {"lobstream_capture": FORMAT_VERSION, "source": source,
                  "created": time.time() * 1000.0}
        self._f.write(orjson.dumps(header) + b"\n")

    def write(self, ts: float, venue: str, stream: str, frame: Union[str, bytes],
              direction: str = "recv") -> None:
        """Record one raw frame as received; it is embedded verbatim when it is JSON."""
        raw = frame.encode() if isinstance(frame, str) else frame
        head = orjson.dumps({"ts": ts, "venue": venue, "stream": stream, "dir": direction})
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:
            line = head[:-1] + b',"raw":' + orjson.dumps(raw.decode("utf-8", "replace")) + b"}\n"
        else:
            line = head[:-1] + b',"msg":' + raw.strip() + b"}\n"
        self._f.write(line)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dumps_frame(msg: Any) -> str:
    """Serialise a decoded message back into a compact frame (simulator, tests)."""
    return orjson.dumps(msg).decode()


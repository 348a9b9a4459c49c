"""lobstream's capture format (version 1): raw exchange frames as JSON lines.

This module is the specification and the stable import point; the code lives in
:mod:`~sources.capture.codec` (pure line codec), :mod:`~sources.capture.reader`,
:mod:`~sources.capture.writer` and :mod:`~sources.capture.recorder`.

File
    UTF-8 text, one JSON object per line, each line ended by ``\\n`` (a reader also
    accepts ``\\r\\n``). gzip-compressed when the file starts with the gzip magic
    bytes (the writers name such files ``*.jsonl.gz``); several concatenated gzip
    members read as one file. Blank lines are ignored.

Header (first line)
    ``{"lobstream_capture":1,"source":"<who wrote it>","created":<epoch ms>}``.
    ``lobstream_capture`` is the format version; a reader refuses a file whose
    first line is not such a header, and a version newer than it knows.

Frame line (every other line), in lobstream's writers' exact layout::

    {"ts":<number>,"venue":"<venue>","stream":"<stream>","dir":"recv"|"send"|"rest"|"event"[,"url":"<url>"],"msg":<frame JSON verbatim>}
    {"ts":<number>,"venue":"<venue>","stream":"<stream>","dir":"recv"|"send"|"rest"|"event"[,"url":"<url>"],"raw":"<frame text>"}

* ``ts``: local receive (``recv``, ``rest``) or send time, epoch milliseconds, a
  JSON number within 2000-01-01..2100-01-01 (946684800000 <= ts < 4102444800000).
  Within one stream it never decreases in file order.
* ``venue``: the lobstream venue name the frames belong to (``coinbase``,
  ``coinbase_exchange``, ``deribit``, ``binance``, ``binance_usdm``,
  ``binance_coinm``: :data:`sources.capture.venues.REPLAYABLE_VENUES`).
* ``stream``: the connection the frame travelled on. Connection-level counters
  (Coinbase ``sequence_num``) only mean something within one stream, so a replay
  keeps streams apart. lobstream's live sources use one connection per product:
  stream ``<venue>:<product>``.
* ``dir``: ``recv`` (from the exchange), ``send`` (our subscribe messages),
  ``rest`` (a REST reply body, such as a Binance depth snapshot, at the moment it
  arrived), ``event`` (something the connection did that is not a frame, so that
  a replay decides what the live feed decided: ``{"event":"open"}``,
  ``{"event":"close","reason":..}``, ``{"event":"resync","product":..,"reason":..,
  "detail":..}``, ``{"event":"overflow","dropped":..}``; written by the Kafka
  capture, :mod:`sources.feed.captured`). Readers select frames by ``dir``;
  captures written before ``rest`` or ``event`` existed simply have none (a reader
  that predates ``event`` counts such lines as bad ``dir`` lines and skips them).
* ``url``: only on ``rest`` lines: the request URL, query included.
* ``msg``: the frame as the exchange sent it, embedded verbatim as JSON (no
  re-serialisation: a reader can slice the bytes out and decode them once).
  Newlines, which JSON allows only as whitespace between tokens, are turned
  into spaces so the frame stays on its line.
* ``raw``: instead of ``msg``, a frame that is not valid JSON (or not valid
  UTF-8; invalid bytes become U+FFFD), as a JSON string, so malformed input can
  be replayed too. A line has exactly one of ``msg`` and ``raw``.

Readers must accept the same object in any other valid JSON layout (other key
order, spaces, extra keys, which are ignored) and do so through a full decode;
the exact layout above is only what makes the fast path apply.

Damage a reader survives (see :mod:`sources.capture.reader`): bad lines are
counted and skipped, a last line without its newline that is not complete JSON is
skipped, a gzip file without its trailer yields every complete line.
"""

from __future__ import annotations

from sources.capture.codec import (
    DIRECTIONS, FORMAT_VERSION, TS_MAX_MS, TS_MIN_MS, BadLine, CaptureFrame, FrameDecodeError,
)
from sources.capture.reader import (
    CaptureReport, NotACaptureError, StreamInfo, capture_files, frame_lines, list_streams,
    read_capture, read_header,
)
from sources.capture.recorder import (
    Recorder, RecorderStats, RecordDirError, check_record_dir, safe_name,
)
from sources.capture.writer import CaptureWriteError, CaptureWriter

__all__ = [
    "DIRECTIONS", "FORMAT_VERSION", "TS_MAX_MS", "TS_MIN_MS", "BadLine", "CaptureFrame",
    "FrameDecodeError", "CaptureReport", "NotACaptureError", "StreamInfo", "capture_files",
    "frame_lines", "list_streams", "read_capture", "read_header", "Recorder",
    "RecorderStats", "RecordDirError", "check_record_dir", "safe_name", "CaptureWriteError",
    "CaptureWriter",
]


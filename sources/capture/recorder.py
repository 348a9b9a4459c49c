"""The live recorder: one :class:`Recorder` per connection stream, owned by the transport.

Unit of parallelism: one recorder per connection stream (``venue:product`` for
lobstream's live sources); nothing is shared between recorders but the flusher
thread. Delivery: best effort, and never at the feed's expense: a frame is either
in a file or counted in :attr:`RecorderStats.dropped` (I/O errors) or
:attr:`RecorderStats.after_close`. Resume: a restarted process never touches an
earlier run's files; it starts new ones.

Files: ``{dir}/{venue}_{stream}_{UTC yyyymmddTHHMMSS.fff}Z_{pid}[_{n}].jsonl.gz``,
where ``{stream}`` is the stream name without its ``{venue}:`` prefix, both
through :func:`safe_name`; ``_{n}`` (3 digits) only when that name exists
already. Every file is created exclusively, so two runs, or two rotations in one
millisecond, can never clobber each other, and names of one stream sort in time
order. Rotation: a new file once the current one reaches ``rotate_bytes``
(compressed bytes written or buffered; default 256 MiB: small enough to copy,
inspect and replay a part of) or
``rotate_seconds`` (default 3600: an hour per file, easy to find by time). A
file that starts after a rotation holds no snapshot until the venue sends one, so
replay a stream's files in order.

Flushing: what is written reaches the file within ``flush_seconds`` (default 1 s),
through a single shared daemon thread that only runs while recorders are open;
for gzip each flush is a ``Z_SYNC_FLUSH``, so ``kill -9`` loses at most that last
second.

Secrets: every frame goes through its venue's redaction
(:attr:`sources.venues.base.Venue.redact`) before it is written, whatever its
direction, so an authentication request (Deribit ``client_secret``, a Coinbase
Exchange signature) and a reply carrying tokens are stored with those values
replaced by ``<redacted>``; frames without secrets are written unchanged.

Errors: no write error reaches the caller. The first one logs a single line
("recording to X paused: No space left on device; the feed continues"), the file is
cut back to a readable end (:class:`~sources.capture.writer.CaptureWriter`), and
frames are counted as dropped until a retry (every ``retry_seconds``, on the next
frame) opens a fresh file; resuming logs one line with the number of frames lost.

Compression cost, measured on the bundled Advanced Trade capture's frames (8.4 MB,
1,035 frames, one core of this 2-core machine), through ``CaptureWriter.write``
(JSON check, line encoding, compression, writes): plain 208 MB/s; gzip level 1
113 MB/s, 0.78 MB on disk; level 6 57 MB/s, 0.64 MB (zlib alone: 247 vs 110 MB/s).
The socket thread pays this per frame (level 1: 45 ms for the 5.1 MB BTC-USD
snapshot, level 6: 90 ms), so level 1 is the default: 18% more disk for twice the
speed.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from sources.capture.writer import CaptureWriteError, CaptureWriter
from sources.venues import redaction

log = logging.getLogger("lobstream.recorder")

DEFAULT_ROTATE_BYTES = 256 * 1024 * 1024
DEFAULT_ROTATE_SECONDS = 3600.0
DEFAULT_RETRY_SECONDS = 5.0
DEFAULT_FLUSH_SECONDS = 1.0
MAX_NAME_PART = 80
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_MAX_COLLISIONS = 1000


def safe_name(text: str, limit: int = MAX_NAME_PART) -> str:
    """``text`` as a file-name part: deterministic, reversible for short names.

    Letters, digits, ``-``, ``_`` and ``.`` stay; every other byte of the UTF-8
    text (``/``, ``\\``, ``:``, NUL, newlines, ``%``...) becomes ``%XX``, and so does
    a leading ``.`` (no hidden files, no ``..``); the empty text is ``%``. A result
    longer than ``limit`` is cut to ``limit - 9`` characters plus ``~`` and the
    first 8 hex digits of the text's SHA-256, so distinct long names stay distinct.
    """
    raw = text.encode("utf-8", "surrogatepass")
    out = "".join(chr(b) if b in _SAFE and not (i == 0 and b == 0x2E) else f"%{b:02X}"
                  for i, b in enumerate(raw)) or "%"
    if len(out) > limit:
        out = out[:limit - 9] + "~" + hashlib.sha256(raw).hexdigest()[:8]
    return out


class RecordDirError(ValueError):
    """``record_dir`` cannot be recorded into; the message is one line."""


def check_record_dir(path: Union[str, Path]) -> Path:
    """Make sure ``path`` is (or can be made) a directory lobstream can write files
    in, by creating it and a probe file; raises RecordDirError. For the config layer
    at start, so a bad ``record_dir`` fails there and not on the first frame."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RecordDirError(f"record_dir {p}: exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise RecordDirError(f"record_dir {p}: cannot create it ({ex.strerror or ex})") from None
    probe = p / f".lobstream-write-check-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"\n")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as ex:
        raise RecordDirError(f"record_dir {p}: cannot write files in it "
                             f"({ex.strerror or ex})") from None
    return p


@dataclass(frozen=True)
class RecorderStats:
    """Counters of one recorder (frames)."""

    written: int      # in files, up to their last flush
    pending: int      # accepted, waiting for the next flush
    dropped: int      # lost to write errors, including a failed chunk's frames
    after_close: int  # arrived after close() and were ignored
    files: int        # files opened
    paused: bool      # recording is paused by an error, waiting to retry


class Recorder:
    """Records one connection stream's frames into rotating capture files."""

    def __init__(self, record_dir: Union[str, Path], venue: str, stream: str, *,
                 source: str = "lobstream recorder", compress: bool = True,
                 compresslevel: int = 1,
                 rotate_bytes: Optional[int] = DEFAULT_ROTATE_BYTES,
                 rotate_seconds: Optional[float] = DEFAULT_ROTATE_SECONDS,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 flush_seconds: float = DEFAULT_FLUSH_SECONDS) -> None:
        self.record_dir = Path(record_dir)
        self.venue = venue
        self.stream = stream
        self.source = source
        self.compress = compress
        self.compresslevel = compresslevel
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.retry_seconds = retry_seconds
        self.flush_seconds = flush_seconds
        self.files: List[Path] = []
        self._redact = redaction(venue)
        self._lock = threading.Lock()
        self._writer: Optional[CaptureWriter] = None
        self._closed = False
        self._written_before = 0  # frames in files already closed
        self._dropped = 0
        self._dropped_in_pause = 0
        self._after_close = 0
        self._paused_until: Optional[float] = None

    # -- public

    def write(self, ts_ms: float, venue: str, stream: str, frame: Union[bytes, str],
              direction: str = "recv", url: Optional[str] = None) -> None:
        """Record one frame, redacted; never raises for I/O (see the module docstring)."""
        frame = self._redact(frame)
        with self._lock:
            if self._closed:
                self._after_close += 1
                return
            writer = self._current(time.monotonic())
            if writer is None:
                self._lost(1)
                return
            try:
                writer.write(ts_ms, venue, stream, frame, direction, url)
            except CaptureWriteError as ex:
                self._failed(ex)

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Write out and close the current file; later writes are counted, ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finish(closing=True)
        _FLUSHER.remove(self)

    def stats(self) -> RecorderStats:
        with self._lock:
            w = self._writer
            return RecorderStats(
                written=self._written_before + (w.frames_written if w else 0),
                pending=w.pending_frames if w else 0, dropped=self._dropped,
                after_close=self._after_close, files=len(self.files),
                paused=self._paused_until is not None)

    @property
    def path(self) -> Optional[Path]:
        """The file being written, if any."""
        w = self._writer
        return w.path if w is not None else None

    # -- internals (lock held)

    def _tick(self, now: float) -> None:
        """Flusher thread: write out data older than half the flush interval."""
        with self._lock:
            w = self._writer
            if w is not None and w.pending_frames and now - w.last_flush >= self.flush_seconds / 2:
                self._flush()

    def _flush(self) -> None:
        if self._writer is not None:
            try:
                self._writer.flush()
            except CaptureWriteError as ex:
                self._failed(ex)

    def _current(self, now: float) -> Optional[CaptureWriter]:
        w = self._writer
        if w is not None and (
                (self.rotate_bytes is not None and w.size >= self.rotate_bytes)
                or (self.rotate_seconds is not None and now - w.opened >= self.rotate_seconds)):
            self._finish()
            w = None
        if w is None:
            if self._paused_until is not None and now < self._paused_until:
                return None
            w = self._open(now)
        return w

    def _open(self, now: float) -> Optional[CaptureWriter]:
        try:
            if self.record_dir.exists() and not self.record_dir.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            self.record_dir.mkdir(parents=True, exist_ok=True)
            for n in range(_MAX_COLLISIONS):
                path = self._name(n)
                try:
                    w = CaptureWriter(path, self.source, compress=self.compress,
                                      compresslevel=self.compresslevel)
                    break
                except FileExistsError:
                    continue
            else:
                raise FileExistsError(f"{_MAX_COLLISIONS} files named like {self._name(0)} exist")
        except OSError as ex:
            self._pause(self.record_dir, ex, now)
            return None
        self._writer = w
        self.files.append(w.path)
        if self._paused_until is not None:
            log.warning("recording resumed to %s; %d frames were not recorded while it "
                        "was paused", w.path, self._dropped_in_pause)
            self._paused_until = None
            self._dropped_in_pause = 0
        _FLUSHER.add(self)
        return w

    def _name(self, n: int) -> Path:
        stream = self.stream.removeprefix(f"{self.venue}:")
        t = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        suffix = f"_{n:03d}" if n else ""
        ext = ".jsonl.gz" if self.compress else ".jsonl"
        return self.record_dir / (f"{safe_name(self.venue)}_{safe_name(stream)}_{stamp}_"
                                  f"{os.getpid()}{suffix}{ext}")

    def _finish(self, closing: bool = False) -> None:
        w, self._writer = self._writer, None
        if w is None:
            return
        try:
            w.close()
        except CaptureWriteError as ex:
            self._written_before += w.frames_written
            self._lost(ex.lost_frames)
            if closing:
                log.error("recording to %s: the last %d frames could not be written: %s",
                          w.path, ex.lost_frames, ex.strerror or ex)
            else:
                self._pause(w.path, ex, time.monotonic())
            return
        self._written_before += w.frames_written

    def _failed(self, ex: CaptureWriteError) -> None:
        w, self._writer = self._writer, None
        if w is not None:
            self._written_before += w.frames_written
        self._lost(ex.lost_frames)
        self._pause(ex.filename or self.record_dir, ex, time.monotonic())

    def _lost(self, n: int) -> None:
        self._dropped += n
        self._dropped_in_pause += n

    def _pause(self, where: Union[str, Path], ex: OSError, now: float) -> None:
        if self._paused_until is None:
            log.error("recording to %s paused: %s; the feed continues, retrying every "
                      "%g s", where, ex.strerror or ex, self.retry_seconds)
        self._paused_until = now + self.retry_seconds


class _Flusher:
    """One daemon thread flushing every open recorder; it exits when none is open."""

    TICK = 0.25

    def __init__(self) -> None:
        self._recorders: "weakref.WeakSet[Recorder]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def add(self, recorder: Recorder) -> None:
        with self._lock:
            self._recorders.add(recorder)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lobstream-recorder-flush",
                                                daemon=True)
                self._thread.start()

    def remove(self, recorder: Recorder) -> None:
        with self._lock:
            self._recorders.discard(recorder)

    def _run(self) -> None:
        tick = self.TICK
        while True:
            time.sleep(tick)
            with self._lock:
                recorders = list(self._recorders)
                if not recorders:
                    self._thread = None
                    return
            tick = max(0.02, min(self.TICK, min(r.flush_seconds for r in recorders) / 4))
            now = time.monotonic()
            for r in recorders:
                r._tick(now)

    def close_all(self) -> None:
        """At interpreter exit: daemon threads die mid-work, so finish files here."""
        with self._lock:
            recorders = list(self._recorders)
        for r in recorders:
            r.close()


_FLUSHER = _Flusher()
atexit.register(_FLUSHER.close_all)

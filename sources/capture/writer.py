"""Writing one capture file: whole lines, gzip with sync flushes, a clean cut on errors.

:class:`CaptureWriter` owns one new file (opened exclusively: it never replaces
anything) and guarantees that what is on disk is always a readable capture:

* the header is written and flushed at open, so even an empty recording is a
  capture (a file whose header could not be written is removed);
* lines are buffered in memory and written in whole-line chunks; for gzip each
  chunk ends with a ``Z_SYNC_FLUSH``, the point up to which a reader can decode a
  file that has no gzip trailer yet (so a capture cut by ``kill -9`` replays up to
  its last flush);
* a failed write (disk full, file too large, I/O error) cuts the file back to the
  end of the last chunk that was written whole and, for gzip, finishes the stream
  there with a valid end marker and trailer, then raises :class:`CaptureWriteError`
  saying how many frames were lost. The writer is closed after that; starting a
  fresh file is :class:`~sources.capture.recorder.Recorder`'s job.

gzip is written with zlib directly (raw deflate framed by hand: a 10-byte header,
the trailer's CRC-32 and length) because the recovery above needs the CRC and
length *at the last sync point*, which :mod:`gzip` does not expose. Throughput figures are in
:mod:`sources.capture.recorder`.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Optional, Union

from sources.capture.codec import encode_line, header_line

#: Bytes of lines buffered before they are written out (and, for gzip, sync-flushed):
#: what a write error can lose at most. On the Coinbase Exchange capture, 64 KiB
#: chunks compress 0.5% worse than one stream, 16 KiB 1.4% worse.
FLUSH_BYTES = 64 * 1024
_GZIP_HEADER = b"\x1f\x8b\x08\x00"  # magic, deflate, no flags; then mtime, XFL, OS
_FINAL_EMPTY_BLOCK = b"\x03\x00"    # a final fixed-Huffman block holding only end-of-block


class CaptureWriteError(OSError):
    """Writing a capture failed; ``lost_frames`` frames accepted since the last
    successful write are not in the file, which was cut back to a readable end."""

    def __init__(self, path: Path, cause: OSError, lost_frames: int) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.lost_frames = lost_frames


class CaptureWriter:
    """One capture file; gzip when ``compress`` (default: the name ends in ``.gz``).

    Thread-safe: ``write`` may be called from one thread while ``flush``/``close``
    come from another; a write after close is ignored and returns False (a socket
    thread may deliver a last frame after the stop). Errors raise OSError (open)
    or :class:`CaptureWriteError` (write/flush/close). ``compresslevel`` 1 is the
    default because the live recorder runs on the socket thread.
    """

    def __init__(self, path: Union[str, Path], source: str = "lobstream recorder", *,
                 compress: Optional[bool] = None, compresslevel: int = 1) -> None:
        self.path = Path(path)
        self._gzip = self.path.name.endswith(".gz") if compress is None else compress
        self._deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, -15) if self._gzip else None
        self._lock = threading.Lock()
        self._pending = bytearray()  # bytes ready for the file (compressed for gzip)
        self._pending_in = 0         # uncompressed bytes since the last chunk
        self._pending_frames = 0
        self._crc = self._size = 0   # of all uncompressed bytes accepted
        self._good = (0, 0, 0)       # (file offset, crc, size) at the end of the last chunk
        self._closed = False
        self.frames_written = 0      # frames in the file, up to the last chunk written
        self.bytes_written = 0       # file size
        self.opened = time.monotonic()
        self.last_flush = self.opened
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            if self._gzip:
                self._pending += _GZIP_HEADER + struct.pack("<I", int(time.time())) + b"\x00\xff"
            self._accept(header_line(source, time.time() * 1000.0))
            self._pending_frames = 0
            self._write_chunk()
        except OSError:
            if not self._closed:
                self._closed = True
                os.close(self._fd)
            self.path.unlink(missing_ok=True)
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        """Bytes in the file plus bytes buffered for it (compressed output so far)."""
        return self.bytes_written + len(self._pending)

    @property
    def pending_frames(self) -> int:
        """Frames buffered that a flush would write."""
        return self._pending_frames

    def write(self, ts: float, venue: str, stream: str, frame: Union[bytes, str],
              direction: str = "recv", url: Optional[str] = None) -> bool:
        """Record one frame as one line (see :func:`~sources.capture.codec.encode_line`)."""
        line = encode_line(ts, venue, stream, frame, direction, url)
        with self._lock:
            if self._closed:
                return False
            self._accept(line)
            if self._pending_in >= FLUSH_BYTES:
                self._write_chunk()
            return True

    def flush(self) -> None:
        """Write what is buffered; for gzip, up to a sync point a reader can decode."""
        with self._lock:
            if not self._closed and self._pending_frames:
                self._write_chunk()

    def close(self) -> None:
        """Write the rest and, for gzip, the end of the stream. Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._deflate is not None:
                    self._pending += self._deflate.flush(zlib.Z_FINISH)
                    self._pending += struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
                self._write_chunk(sync=False)
            finally:
                if not self._closed:
                    self._closed = True
                    os.close(self._fd)

    # -- internals (called with the lock held)

    def _accept(self, line: bytes) -> None:
        if self._deflate is not None:
            self._pending += self._deflate.compress(line)
            self._crc = zlib.crc32(line, self._crc)
            self._size += len(line)
        else:
            self._pending += line
        self._pending_in += len(line)
        self._pending_frames += 1

    def _write_chunk(self, sync: bool = True) -> None:
        if sync and self._deflate is not None:
            self._pending += self._deflate.flush(zlib.Z_SYNC_FLUSH)
        done, failure = 0, None
        with memoryview(self._pending) as data:
            try:
                while done < len(data):
                    done += os.write(self._fd, data[done:])
            except OSError as ex:
                failure = ex
        if failure is not None:
            self._fail(failure, done)
        self.bytes_written += len(self._pending)
        self.frames_written += self._pending_frames
        self._good = (self.bytes_written, self._crc, self._size)
        self._pending.clear()
        self._pending_in = self._pending_frames = 0
        self.last_flush = time.monotonic()

    def _fail(self, cause: OSError, done: int) -> None:
        """Cut the file back to its last whole chunk (a plain file: to its last whole
        line), end it readably, close, and raise."""
        offset, crc, size = self._good
        salvaged = 0
        if not self._gzip:  # the lines of the chunk that did reach the file stay
            kept = self._pending.rfind(b"\n", 0, done) + 1
            salvaged = min(self._pending.count(b"\n", 0, kept), self._pending_frames)
            offset += kept
            self.frames_written += salvaged
            self.bytes_written = offset
        lost = self._pending_frames - salvaged
        self._closed = True
        try:
            os.ftruncate(self._fd, offset)
            if self._gzip:
                os.lseek(self._fd, offset, os.SEEK_SET)
                end = _FINAL_EMPTY_BLOCK + struct.pack("<II", crc, size & 0xFFFFFFFF)
                if os.write(self._fd, end) != len(end):
                    os.ftruncate(self._fd, offset)  # a cut gzip still reads, with a warning
        except OSError:
            pass  # the cut is best effort: the reader handles a partial last line too
        finally:
            os.close(self._fd)
        self._pending.clear()
        raise CaptureWriteError(self.path, cause, lost) from None

    def __del__(self) -> None:
        # A writer dropped without close() must not leak its descriptor (and
        # should still end its file readably).
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

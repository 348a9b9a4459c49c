"""Convert other recorders' websocket dumps into lobstream captures.

Usage::

    python -m sources.capture.convert INPUT OUTPUT [--format auto|cryptofeed-v1|cryptofeed-v2|hftbacktest|ssc2ce]
        [--venue coinbase|coinbase_exchange|deribit|binance|binance_usdm|binance_coinm]
        [--products A,B] [--window SECONDS] [--force]

Every frame is handed to :class:`~sources.capture.writer.CaptureWriter` exactly as it
was recorded, so a converted capture replays the exchange's own bytes; the converter
only supplies what the lobstream format adds around them (time, venue, stream,
direction, and the url of REST replies). The one change: secrets another recorder
kept (an authentication request, a token) are redacted by the venue
(:attr:`~sources.venues.base.Venue.redact`), as lobstream's own recorder does. The input formats, one module each in
:mod:`sources.capture.inputs`, are detected from the first non-blank line unless
``--format`` is given; gzip and zstd inputs are decompressed on the fly (zstd needs
the optional ``zstandard`` package).

The venue comes from the content (cryptofeed header or connect URL, frame shapes;
Binance spot, USD-M and COIN-M from their depth diffs and symbols), and from the
file name only when the content names no exchange at all. Refused at conversion
time rather than at replay: a file that already is a lobstream capture, a file in
no known format, and a venue lobstream cannot replay
(:data:`~sources.capture.venues.REPLAYABLE_VENUES`).

``--products`` keeps only frames that name at least one of the given instruments
(exchange spelling, e.g. ``BTC-PERPETUAL``, ``BTCUSDT``); frames that name none are
connection-level and always kept (:mod:`sources.capture.products`). It is refused for
Coinbase Advanced Trade, which numbers every frame of a connection: dropping any
would show up as a false gap. ``--window S`` keeps the file's frames up to the
first one more than ``S`` seconds (local time) after the first frame: a prefix of
the recording with every frame in it, so a window that contains a book's snapshot
keeps its whole diff chain.

The output is written to a temporary file beside it and moved into place when
complete; an existing OUTPUT is never replaced without ``--force``. A long
conversion prints a progress line to stderr every few seconds; the end is one
summary line on stdout. Any error is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, NamedTuple, NoReturn, Optional, Sequence, Tuple

from sources.capture.codec import HEADER_KEY, sample
from sources.capture.inputs import FORMATS
from sources.capture.inputs.common import ConvertError, Detected, Meter, first_lines, loads
from sources.capture.products import keep, normalise
from sources.capture.venues import REPLAYABLE_VENUES, venue_of_label
from sources.capture.writer import CaptureWriter
from sources.venues import redaction

#: Lines detection looks at: enough to reach a Binance depth diff behind a burst
#: of book tickers.
SNIFF_LINES = 1000
PROGRESS_SECONDS = 3.0
_LOBSTREAM_KEYS = frozenset(("ts", "venue", "stream"))

__all__ = ["ConvertError", "Summary", "convert", "detect", "main"]


class Summary(NamedTuple):
    """What a conversion did, for the closing summary line and for tests."""

    fmt: str
    venue: str
    frames_in: Counter
    frames_out: Counter
    skipped: Counter
    seconds: float = 0.0

    def line(self, src: str, dst: str) -> str:
        dirs = sorted(set(self.frames_in) | set(self.frames_out))
        frames = ", ".join(f"{d} {self.frames_in[d]} in/{self.frames_out[d]} out" for d in dirs)
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (f"{src} -> {dst} [{self.fmt}, {self.venue}]: {frames or 'no frames'}; "
                f"skipped lines: {skipped}; {self.seconds:.1f} s")


class Progress(NamedTuple):
    frames: int
    done_bytes: int
    total_bytes: int
    seconds: float

    def line(self, src: str) -> str:
        pct = 100.0 * self.done_bytes / self.total_bytes if self.total_bytes else 100.0
        return (f"convert: {src}: {pct:.0f}% ({self.done_bytes / 1e6:.1f}/"
                f"{self.total_bytes / 1e6:.1f} MB), {self.frames:,} frames, {self.seconds:.0f} s")


def _refuse_lobstream(src: Path, first: Sequence[str]) -> None:
    obj = loads(first[0]) if first else None
    if isinstance(obj, dict) and HEADER_KEY in obj:
        raise ConvertError(f"{src} is already a lobstream capture; replay it directly, "
                           "it needs no conversion")
    if isinstance(obj, dict) and _LOBSTREAM_KEYS <= obj.keys() and ("msg" in obj or "raw" in obj):
        raise ConvertError(f"{src} holds lobstream capture lines without their header line; "
                           f'add a first line {{"{HEADER_KEY}":1}} instead of converting it')


def detect(src: Path) -> Tuple[ModuleType, Detected]:
    """The input format module and what the first lines say about the venue."""
    first = first_lines(src, SNIFF_LINES)
    if not first:
        raise ConvertError(f"{src}: the file is empty")
    _refuse_lobstream(src, first)
    for module in FORMATS.values():
        if module.sniff(first[0]):
            return module, module.detect(first, src)
    raise ConvertError(f"{src}: not a recorder file lobstream knows (formats: "
                       f"{', '.join(FORMATS)}); its first line matches none of them")


def _venue(src: Path, detected: Detected, venue: Optional[str]) -> str:
    if venue is not None:
        if venue not in REPLAYABLE_VENUES:
            raise ConvertError(f"venue {venue!r} cannot be replayed; choose one of "
                               f"{', '.join(REPLAYABLE_VENUES)}")
        return venue
    if detected.venue is not None:
        return detected.venue
    if detected.label is not None:
        raise ConvertError(f"{src}: recorded from '{sample(detected.label.encode(), 80)}', "
                           "which is not a venue "
                           f"lobstream can replay ({', '.join(REPLAYABLE_VENUES)}); if it "
                           "is one of them, pass --venue")
    guess = venue_of_label(src.name)
    if guess is None:
        raise ConvertError(f"{src}: cannot tell the venue; pass --venue "
                           f"{'|'.join(REPLAYABLE_VENUES)}")
    return guess


def _place(tmp: Path, dst: Path, force: bool) -> None:
    """Move the finished output into place; without force, never over a file."""
    if force:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)  # fails if dst exists, unlike a rename
    except FileExistsError:
        raise ConvertError(f"{dst} exists; pass --force to replace it") from None
    except OSError:  # no hard links on this file system: check, then rename
        if dst.exists():
            raise ConvertError(f"{dst} exists; pass --force to replace it") from None
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def convert(src: Path | str, dst: Path | str, fmt: str = "auto", venue: Optional[str] = None,
            products: Optional[Iterable[str]] = None, window: Optional[float] = None,
            force: bool = False, progress: Optional[Callable[[Progress], None]] = None,
            progress_seconds: float = PROGRESS_SECONDS) -> Summary:
    """Convert ``src`` into the lobstream capture ``dst``; see the module docstring."""
    src, dst = Path(src), Path(dst)
    started = time.monotonic()
    if not src.is_file():
        raise ConvertError(f"{src}: no such file")
    if dst.exists() and not force:
        raise ConvertError(f"{dst} exists; pass --force to replace it")
    if fmt != "auto" and fmt not in FORMATS:
        raise ConvertError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    sniffed, detected = detect(src)
    module = FORMATS[fmt] if fmt != "auto" else sniffed
    if module is not sniffed:
        detected = module.detect(first_lines(src, SNIFF_LINES), src)
    venue = _venue(src, detected, venue)
    wanted = {normalise(venue, p) for p in products or () if p}
    if wanted and venue == "coinbase":
        raise ConvertError(
            "--products is not supported for coinbase: sequence_num counts every frame of "
            "a connection, so filtering would create false gaps; convert the whole file"
        )
    if window is not None and not window > 0:
        raise ConvertError("--window must be a positive number of seconds")
    frames_in: Counter = Counter()
    frames_out: Counter = Counter()
    skipped: Counter = Counter()
    meter = Meter()
    redact = redaction(venue)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    end_ts: Optional[float] = None
    past_window = False  # the window is a prefix: nothing after its first later frame
    next_report = started + progress_seconds
    try:
        with CaptureWriter(tmp, source=f"sources.capture.convert {module.NAME} {src.name}",
                           compress=dst.name.endswith(".gz"), compresslevel=6) as writer:
            for n, frame in enumerate(module.read(src, venue, skipped, meter), 1):
                frames_in[frame.direction] += 1
                if window is not None:
                    end_ts = frame.ts + window * 1000.0 if end_ts is None else end_ts
                    past_window = past_window or frame.ts > end_ts
                    if past_window:
                        continue
                if wanted and not keep(venue, wanted, loads(frame.data), frame.url):
                    continue
                writer.write(frame.ts, venue, frame.stream, redact(frame.data),
                             frame.direction, frame.url)
                frames_out[frame.direction] += 1
                if progress is not None and n % 256 == 0 and time.monotonic() >= next_report:
                    now = time.monotonic()
                    next_report = now + progress_seconds
                    progress(Progress(n, meter.done, meter.size, now - started))
        _place(tmp, dst, force)
    finally:
        tmp.unlink(missing_ok=True)
    return Summary(module.NAME, venue, frames_in, frames_out, skipped,
                   time.monotonic() - started)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"convert: error: {message} (see --help)\n")


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m sources.capture.convert"
         ) -> int:
    """Convert one file; ``prog`` names the command in help (``lobstream convert``
    calls this too)."""
    parser = _Parser(
        prog=prog,
        description="Convert cryptofeed, hftbacktest and ssc2ce recordings into lobstream captures.",
    )
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path, help="capture to write (gzip when it ends in .gz)")
    parser.add_argument("--format", default="auto", choices=("auto",) + tuple(FORMATS))
    parser.add_argument("--venue", choices=REPLAYABLE_VENUES,
                        help="default: detected from content or name")
    parser.add_argument("--products", default="",
                        help="comma-separated instruments to keep (not for coinbase)")
    parser.add_argument("--window", type=float, metavar="SECONDS",
                        help="keep only the frames of the first SECONDS of the recording")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.input, args.output, args.format, args.venue,
                          [p.strip() for p in args.products.split(",")], args.window,
                          args.force,
                          lambda p: print(p.line(str(args.input)), file=sys.stderr, flush=True))
    except ConvertError as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"convert: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("convert: interrupted; no output written", file=sys.stderr)
        return 130
    print(summary.line(str(args.input), str(args.output)))
    if summary.skipped.get("cut_off"):
        print(f"convert: warning: {args.input} ends early (compressed data cut off); "
              "converted every complete line before the cut", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

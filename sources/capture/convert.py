"""Convert other recorders' websocket dumps into lobstream captures.

Usage::

    python -m sources.capture.convert INPUT OUTPUT [--format auto|cryptofeed-v1|cryptofeed-v2|ssc2ce]
                              [--venue coinbase|coinbase_exchange|deribit|binance] [--products A,B]

Every frame is handed to :class:`~sources.capture.format.CaptureWriter` exactly as it was
recorded, so a converted capture replays the exchange's own bytes; the converter only
supplies what the lobstream format adds around them (time, venue, stream, direction).

Input formats (detected from the first non-blank line unless ``--format`` is given;
``.zst`` and ``.gz`` inputs are decompressed on the fly, ``.zst`` needs the optional
``zstandard`` package):

* **cryptofeed-v2**: JSON lines ``{"t": ..., "conn": ..., "ts": <epoch s>, "data": "<frame>"}``.
  ``recv`` and ``send`` lines become frames; ``header``, ``http`` and ``connect`` lines
  are skipped. The recorded ``conn`` becomes the stream, untouched: Coinbase
  ``sequence_num`` counts messages per connection, so splitting or merging
  connections would invent or hide gaps.
* **cryptofeed-v1**: text lines ``ts: {json}`` (received), ``wss://... <- ts: {json}``
  (sent), ``wss://... <-> ts`` (connect), plus ``configuration:`` lines, REST calls
  (``https://... -> ts: {json}``) and blank lines, which are skipped. The stream is
  the file's base name (cryptofeed names v1 files after the connection); a second
  connect line in the same file is a reconnect, whose frames go to a new stream
  ``<base>#2`` (then ``#3``...) because per-connection counters restart there.
  Skipping REST lines means a converted Binance file has no depth snapshots.
* **ssc2ce**: one raw frame per line and no local time at all. The time of a frame
  is taken from its own exchange stamp (Deribit ``params.data.timestamp`` in ms, or
  ``usOut`` in microseconds on RPC responses; Coinbase ``time``/``timestamp`` ISO 8601;
  Binance event time ``E``); a frame without one borrows the time of the previous
  frame, and frames before the first stamped frame borrow that first stamp (0.0
  when the file has no stamp at all). A capture's ``ts`` is a receive clock, which
  never runs backwards in file order, so a stamp older than the previous frame's
  time is raised to it.

``--products`` keeps only frames that name at least one of the given instruments
(exchange spelling, e.g. ``BTC-PERPETUAL``, ``BTCUSDT``); frames that name no
instrument at all (heartbeats, subscribe acknowledgements without channels) are
connection-level and always kept. It is refused for Coinbase: Advanced Trade numbers
every frame of a connection, so dropping any frame would show up as a false gap.

The venue comes from the content (v2 header, v1 connect URL, ssc2ce frame shape)
and otherwise from the file name, unless ``--venue`` is given.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from collections import Counter
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set

import orjson

from sources.capture.format import CaptureWriter

#: Longest names first: "coinbase_exchange" must not be taken for "coinbase".
VENUES = ("coinbase_exchange", "coinbase", "deribit", "binance")
#: Host names that tell the two Coinbase feeds apart (Exchange, formerly Pro, vs
#: Advanced Trade); recorders label both "COINBASE".
_EXCHANGE_HOSTS = ("ws-feed.pro.coinbase.com", "ws-feed.exchange.coinbase.com", "ws-feed.")
FORMATS = ("cryptofeed-v1", "cryptofeed-v2", "ssc2ce")
V2_KINDS = frozenset({"header", "http", "connect", "send", "recv"})
V2_SKIPPED = frozenset({"header", "http", "connect"})
SNIFF_LINES = 100  # detection looks no further; venue then falls back to the file name


class Frame(NamedTuple):
    """One frame read from a recorder file; ``ts`` in epoch ms, ``data`` verbatim."""

    ts: float
    stream: str
    direction: str
    data: str


class Summary(NamedTuple):
    """What a conversion did, for the closing summary line and for tests."""

    fmt: str
    venue: str
    frames_in: Counter
    frames_out: Counter
    skipped: Counter

    def line(self, src: str, dst: str) -> str:
        dirs = sorted(set(self.frames_in) | set(self.frames_out))
        frames = ", ".join(f"{d} {self.frames_in[d]} in/{self.frames_out[d]} out" for d in dirs)
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"{src} -> {dst} [{self.fmt}, {self.venue}]: {frames or 'no frames'}; skipped lines: {skipped}"


class ConvertError(Exception):
    """A problem with the input or the options, reported as one line."""


# --------------------------------------------------------------------------- input


def _open_text(path: Path) -> IO[str]:
    """Open a recorder file as text, decompressing by file extension."""
    if path.suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise ConvertError(
                f"{path}: reading .zst needs the optional zstandard package "
                "(pip install 'lobstream[convert]'), or decompress it first with zstd -d"
            ) from None
        raw: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return io.TextIOWrapper(raw, encoding="utf-8")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def _lines(path: Path) -> Iterator[str]:
    with _open_text(path) as f:
        for line in f:
            yield line.rstrip("\r\n")


def _base_name(path: Path) -> str:
    """The connection name cryptofeed gave the file: no compression or rotation suffix."""
    name = path.name
    for ext in (".zst", ".gz", ".jsonl", ".json"):
        name = name.removesuffix(ext)
    stem, _, rotation = name.rpartition(".")
    return stem if stem and rotation.isdigit() else name


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _ms(seconds: str | float) -> float:
    """Epoch seconds to epoch ms, rounded to the microsecond the recorders resolve."""
    return round(float(seconds) * 1000.0, 3)


def _is_v1_stamp(text: str) -> bool:
    ts, sep, _ = text.partition(": ")
    return bool(sep) and ts.replace(".", "", 1).isdigit()


def sniff_format(first_line: str) -> str:
    """Tell the recorder format from the first non-blank line of a file."""
    if first_line.startswith(("configuration:", "wss://", "ws://", "https://", "http://")):
        return "cryptofeed-v1"
    if _is_v1_stamp(first_line):
        return "cryptofeed-v1"
    obj = _loads(first_line)
    if isinstance(obj, dict) and obj.get("t") in V2_KINDS:
        return "cryptofeed-v2"
    return "ssc2ce"


def _venue_in(text: str) -> Optional[str]:
    low = text.lower()
    if any(host in low for host in _EXCHANGE_HOSTS):
        return "coinbase_exchange"
    return next((v for v in VENUES if v in low), None)


def _venue_of_frame(msg: Any) -> Optional[str]:
    """Recognise a venue from the shape of one of its frames (ssc2ce dumps)."""
    if not isinstance(msg, dict):
        return None
    if "jsonrpc" in msg:
        return "deribit"
    if "stream" in msg or "e" in msg or "lastUpdateId" in msg:
        return "binance"
    if "channel" in msg:  # Advanced Trade wraps everything in a channel envelope
        return "coinbase"
    if "type" in msg:
        return "coinbase_exchange"
    return None


def detect(path: Path) -> tuple[str, Optional[str]]:
    """Sniff (format, venue-or-None) from the first lines of ``path``."""
    fmt: Optional[str] = None
    header_venue: Optional[str] = None
    for line in islice(_lines(path), SNIFF_LINES):
        if not line.strip():
            continue
        if fmt is None:
            fmt = sniff_format(line)
        if fmt == "cryptofeed-v2":
            obj = _loads(line) or {}
            if obj.get("t") == "header":
                header_venue = _venue_in(str(obj.get("exchange", "")))
            elif obj.get("t") in ("connect", "send", "recv"):
                # The address tells the two Coinbase feeds apart; the header cannot.
                return fmt, _venue_in(str(obj.get("addr") or "")) or header_venue
        elif fmt == "cryptofeed-v1":
            if line.startswith(("wss://", "ws://")):
                return fmt, _venue_in(line.split(" ", 1)[0])
        else:
            venue = _venue_of_frame(_loads(line))
            if venue:
                return fmt, venue
    return fmt or "ssc2ce", header_venue


# --------------------------------------------------------------------------- readers


def read_cryptofeed_v2(path: Path, venue: str, skipped: Counter) -> Iterator[Frame]:
    for line in _lines(path):
        if not line.strip():
            skipped["blank"] += 1
            continue
        rec = _loads(line)
        kind = rec.get("t") if isinstance(rec, dict) else None
        if kind in ("recv", "send") and isinstance(rec.get("data"), str):
            yield Frame(_ms(rec["ts"]), f"{venue}:{rec['conn']}", kind, rec["data"])
        else:
            skipped[kind if kind in V2_SKIPPED else "malformed"] += 1


def read_cryptofeed_v1(path: Path, venue: str, skipped: Counter) -> Iterator[Frame]:
    base = _base_name(path)
    stream = f"{venue}:{base}"
    connects = 0
    for line in _lines(path):
        if not line.strip():
            skipped["blank"] += 1
        elif line.startswith("configuration:"):
            skipped["configuration"] += 1
        elif line.startswith(("https://", "http://")):
            skipped["rest"] += 1
        elif line.startswith(("wss://", "ws://")):
            _, arrow, rest = line.partition(" <- ")
            if arrow:
                ts, sep, data = rest.partition(": ")
                if sep:
                    yield Frame(_ms(ts), stream, "send", data)
                    continue
            elif " <-> " in line:
                connects += 1
                stream = f"{venue}:{base}" if connects == 1 else f"{venue}:{base}#{connects}"
                skipped["connect"] += 1
                continue
            skipped["malformed"] += 1
        elif _is_v1_stamp(line):
            ts, _, data = line.partition(": ")
            yield Frame(_ms(ts), stream, "recv", data)
        else:
            skipped["malformed"] += 1


def _iso_ms(text: Any) -> Optional[float]:
    if not isinstance(text, str):
        return None
    try:
        return round(datetime.fromisoformat(text).timestamp() * 1000.0, 3)
    except ValueError:
        return None


def exchange_stamp(venue: str, msg: Any) -> Optional[float]:
    """The exchange's own time of a frame in epoch ms, if it carries one."""
    if not isinstance(msg, dict):
        return None
    if venue == "deribit":
        data = (msg.get("params") or {}).get("data")
        if isinstance(data, list) and data:
            data = data[0]
        if isinstance(data, dict) and isinstance(data.get("timestamp"), (int, float)):
            return float(data["timestamp"])
        if isinstance(msg.get("usOut"), int):
            return msg["usOut"] / 1000.0
        return None
    if venue in ("coinbase", "coinbase_exchange"):
        return _iso_ms(msg.get("time")) or _iso_ms(msg.get("timestamp"))
    data = msg.get("data", msg)
    stamp = data.get("E") if isinstance(data, dict) else None
    return float(stamp) if isinstance(stamp, (int, float)) else None


def read_ssc2ce(path: Path, venue: str, skipped: Counter) -> Iterator[Frame]:
    stream = f"{venue}:{_base_name(path)}"
    waiting: List[str] = []  # frames before the first stamp, which lends them its time
    last: Optional[float] = None
    for line in _lines(path):
        if not line.strip():
            skipped["blank"] += 1
            continue
        stamp = exchange_stamp(venue, _loads(line))
        if last is None:
            if stamp is None:
                waiting.append(line)
                continue
            last = stamp
            for data in waiting:
                yield Frame(last, stream, "recv", data)
            waiting.clear()
        last = max(last, stamp) if stamp is not None else last
        yield Frame(last, stream, "recv", line)
    for data in waiting:
        yield Frame(0.0, stream, "recv", data)


READERS = {
    "cryptofeed-v1": read_cryptofeed_v1,
    "cryptofeed-v2": read_cryptofeed_v2,
    "ssc2ce": read_ssc2ce,
}


# --------------------------------------------------------------------------- products


def _instrument_of_channel(channel: Any) -> Set[str]:
    """Deribit channels look like ``book.BTC-PERPETUAL.raw``; instrument names have a dash."""
    if not isinstance(channel, str):
        return set()
    return {part for part in channel.split(".") if "-" in part}


def _binance_symbol(name: Any) -> Set[str]:
    return {name.split("@", 1)[0].upper()} if isinstance(name, str) and name else set()


def products_named(venue: str, msg: Any) -> Set[str]:
    """The instruments a frame is about; empty for connection-level frames."""
    if not isinstance(msg, dict):
        return set()
    found: Set[str] = set()
    if venue == "deribit":
        params = msg.get("params") or {}
        found |= _instrument_of_channel(params.get("channel"))
        for ch in params.get("channels") or []:
            found |= _instrument_of_channel(ch)
        result = msg.get("result")
        for ch in result if isinstance(result, list) else []:
            found |= _instrument_of_channel(ch)
        data = params.get("data")
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and isinstance(item.get("instrument_name"), str):
                found.add(item["instrument_name"])
    elif venue == "coinbase_exchange":
        if isinstance(msg.get("product_id"), str):
            found.add(msg["product_id"])
        found |= {p for p in msg.get("product_ids") or [] if isinstance(p, str)}
    elif venue == "binance":
        found |= _binance_symbol(msg.get("stream"))
        params = msg.get("params")
        for name in params if isinstance(params, list) else []:
            found |= _binance_symbol(name)
        data = msg.get("data", msg)
        if isinstance(data, dict) and isinstance(data.get("s"), str):
            found.add(data["s"].upper())
    return found


def _normalise(venue: str, product: str) -> str:
    """Binance symbols have no separator (BTC-USDT → BTCUSDT); Deribit names are exact."""
    if venue == "binance":
        return product.upper().replace("-", "").replace("/", "")
    return product


def _keep(venue: str, wanted: Set[str], data: str) -> bool:
    named = products_named(venue, _loads(data))
    if venue == "binance":
        named = {_normalise(venue, p) for p in named}
    return not named or bool(named & wanted)


# --------------------------------------------------------------------------- driver


def convert(src: Path | str, dst: Path | str, fmt: str = "auto", venue: Optional[str] = None,
            products: Optional[Iterable[str]] = None) -> Summary:
    """Convert ``src`` into the lobstream capture ``dst``; see the module docstring."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConvertError(f"{src}: no such file")
    sniffed_fmt, sniffed_venue = detect(src)
    fmt = sniffed_fmt if fmt == "auto" else fmt
    venue = venue or sniffed_venue or _venue_in(src.name)
    if fmt not in FORMATS:
        raise ConvertError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if venue not in VENUES:
        raise ConvertError(f"{src}: cannot tell the venue; pass --venue {'|'.join(VENUES)}")
    wanted = {_normalise(venue, p) for p in products or () if p}
    if wanted and venue == "coinbase":
        raise ConvertError(
            "--products is not supported for coinbase: sequence_num counts every frame of "
            "a connection, so filtering would create false gaps; convert the whole file"
        )
    frames_in: Counter = Counter()
    frames_out: Counter = Counter()
    skipped: Counter = Counter()
    with CaptureWriter(dst, source=f"sources.capture.convert {fmt} {src.name}") as writer:
        for frame in READERS[fmt](src, venue, skipped):
            frames_in[frame.direction] += 1
            if wanted and not _keep(venue, wanted, frame.data):
                continue
            writer.write(frame.ts, venue, frame.stream, frame.data, frame.direction)
            frames_out[frame.direction] += 1
    return Summary(fmt, venue, frames_in, frames_out, skipped)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sources.capture.convert",
        description="Convert cryptofeed / ssc2ce websocket recordings into lobstream captures.",
    )
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path, help="capture to write (gzip when it ends in .gz)")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    parser.add_argument("--venue", choices=VENUES, help="default: detected from content or name")
    parser.add_argument("--products", default="",
                        help="comma-separated instruments to keep (not for coinbase)")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.input, args.output, args.format, args.venue,
                          [p.strip() for p in args.products.split(",")])
    except ConvertError as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return 1
    print(summary.line(str(args.input), str(args.output)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

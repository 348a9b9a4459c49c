"""hftbacktest raw Binance captures: gzip text, ``<local_ts_ns> <json>`` per line.

Sample (``examples/spot/btcusdt_20240808.gz``, shortened)::

    1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[...],"a":[...]}}
    1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade",...}}
    1723161254206652067 {"lastUpdateId":50093239218,"bids":[...],"asks":[...]}

The payloads are Binance combined-stream messages, received frames; the REST
``/depth`` snapshot the recorder fetched is inlined as a bare
``{"lastUpdateId":..,"bids":..,"asks":..}`` line and becomes a ``rest`` frame at
its position, with the URL of the venue's depth endpoint for the file's symbol
(see :func:`~sources.capture.venues.binance_depth_url`). Spot, USD-M and COIN-M
are told apart from the content (:func:`~sources.capture.venues.binance_market`).
Each file is one connection: stream ``<venue>:<file base name>``. Concatenated
gzip members read as one continuous capture. The local time (ns) becomes ms
rounded to the microsecond.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

from sources.capture.inputs.common import (
    ConvertError, Detected, Frame, Meter, base_name, lines, loads,
)
from sources.capture.codec import plausible_ts
from sources.capture.venues import binance_depth_url, binance_market

NAME = "hftbacktest"
_LINE = re.compile(r"^(\d{10,20}) ([\[{].*)$", re.DOTALL)
#: Frames held after a snapshot that came before any message naming the symbol.
MAX_HELD = 10_000


def sniff(first_line: str) -> bool:
    return _LINE.match(first_line) is not None


def detect(first: Sequence[str], path: Path) -> Detected:
    msgs = []
    for line in first:
        m = _LINE.match(line)
        if m:
            msgs.append(loads(m.group(2)))
    return Detected(binance_market(msgs), "Binance (hftbacktest)")


def _is_snapshot(msg: Any) -> bool:
    return isinstance(msg, dict) and "lastUpdateId" in msg and "stream" not in msg


def _symbol(msg: Any) -> Optional[str]:
    """The symbol a combined-stream message is about (``btcusdt@depth`` -> BTCUSDT)."""
    if not isinstance(msg, dict):
        return None
    if isinstance(msg.get("symbol"), str):
        return msg["symbol"]
    name = msg.get("stream")
    return name.split("@", 1)[0].upper() if isinstance(name, str) and name else None


def _rest_url(venue: str, symbol: str, snap: dict) -> str:
    bids, asks = snap.get("bids"), snap.get("asks")
    levels = max(len(bids) if isinstance(bids, list) else 0,
                 len(asks) if isinstance(asks, list) else 0)
    return binance_depth_url(venue, symbol, levels)


def read(path: Path, venue: str, skipped: Counter, meter: Optional[Meter] = None) -> Iterator[Frame]:
    stream = f"{venue}:{base_name(path)}"
    symbol: Optional[str] = None
    held: List[tuple] = []  # (ts, payload, snapshot or None) waiting for the symbol
    for line in lines(path, skipped, meter):
        m = _LINE.match(line)
        if m is None:
            skipped["malformed"] += 1
            continue
        ts = round(int(m.group(1)) / 1e6, 3)
        if plausible_ts(ts) is not None:
            skipped["bad_time"] += 1
            continue
        payload = m.group(2)
        msg = loads(payload)
        snapshot = msg if _is_snapshot(msg) else None
        if snapshot is None:
            named = _symbol(msg)
            depth = isinstance(msg.get("stream"), str) and "@depth" in msg["stream"]
            if named and (symbol is None or depth):
                symbol = named  # the snapshot that follows is of the latest depth stream
        elif isinstance(snapshot.get("symbol"), str):
            symbol = snapshot["symbol"]
        if symbol is None and (held or snapshot is not None):
            if len(held) >= MAX_HELD:
                raise ConvertError(f"{path}: a depth snapshot names no symbol and none of "
                                   f"the {MAX_HELD} messages after it does")
            held.append((ts, payload, snapshot))
            continue
        for h_ts, h_payload, h_snap in held:
            yield _frame(stream, venue, symbol, h_ts, h_payload, h_snap)
        held.clear()
        yield _frame(stream, venue, symbol, ts, payload, snapshot)
    if held:
        raise ConvertError(f"{path}: a depth snapshot names no symbol and no message does")


def _frame(stream: str, venue: str, symbol: str, ts: float, payload: str,
           snapshot: Optional[dict]) -> Frame:
    if snapshot is None:
        return Frame(ts, stream, "recv", payload)
    return Frame(ts, stream, "rest", payload, _rest_url(venue, symbol, snapshot))

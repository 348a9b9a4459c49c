"""ssc2ce dumps: one raw frame per line and no local time at all.

Sample (``ssc2ce/tests/deribit_dump.jsonl``, shortened)::

    {"jsonrpc":"2.0","id":1,"result":["book.BTC-PERPETUAL.raw"],"usIn":1592820068465811,"usOut":1592820068466004,...}
    {"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"timestamp":1592820067334,...}}}

The time of a frame is taken from its own exchange stamp (Deribit
``params.data.timestamp`` in ms, or ``usOut`` in microseconds on RPC responses;
Coinbase ``time``/``timestamp`` ISO 8601; Binance event time ``E``); a frame
without one borrows the time of the previous frame, and frames before the first
stamped frame borrow that first stamp. A file with no stamp at all cannot be
converted (a capture needs a time). A capture's ``ts`` is a receive clock, which
never runs backwards in file order, so a stamp older than the previous frame's
time is raised to it. Every line is one received frame, kept verbatim (a line
that is not JSON becomes a ``raw`` frame).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

from sources.capture.inputs.common import (
    ConvertError, Detected, Frame, Meter, base_name, lines, loads,
)
from sources.capture.venues import BINANCE_VENUES, binance_market, venue_of_frame

NAME = "ssc2ce"
#: Frames held while waiting for the first stamp; a dump with none that early has none.
MAX_UNSTAMPED = 100_000


def sniff(first_line: str) -> bool:
    return isinstance(loads(first_line), (dict, list))


def detect(first: Sequence[str], path: Path) -> Detected:
    msgs = [loads(line) for line in first]
    for msg in msgs:
        venue = venue_of_frame(msg)
        if venue == "binance":
            return Detected(binance_market(msgs), "Binance (spot or futures)")
        if venue:
            return Detected(venue, venue)
    return Detected(None, None)


def _iso_ms(text: Any) -> Optional[float]:
    if not isinstance(text, str):
        return None
    try:
        return round(datetime.fromisoformat(text).timestamp() * 1000.0, 3)
    except (ValueError, OverflowError, OSError):
        return None


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def exchange_stamp(venue: str, msg: Any) -> Optional[float]:
    """The exchange's own time of a frame in epoch ms, if it carries one."""
    if not isinstance(msg, dict):
        return None
    if venue == "deribit":
        params = msg.get("params")
        data = params.get("data") if isinstance(params, dict) else None
        if isinstance(data, list) and data:
            data = data[0]
        if isinstance(data, dict) and _number(data.get("timestamp")) is not None:
            return _number(data["timestamp"])
        us = msg.get("usOut")
        return us / 1000.0 if isinstance(us, int) and not isinstance(us, bool) else None
    if venue in ("coinbase", "coinbase_exchange"):
        return _iso_ms(msg.get("time")) or _iso_ms(msg.get("timestamp"))
    if venue in BINANCE_VENUES:
        data = msg.get("data", msg)
        return _number(data.get("E")) if isinstance(data, dict) else None
    return None


def read(path: Path, venue: str, skipped: Counter, meter: Optional[Meter] = None) -> Iterator[Frame]:
    stream = f"{venue}:{base_name(path)}"
    waiting: List[str] = []  # frames before the first stamp, which lends them its time
    last: Optional[float] = None
    for line in lines(path, skipped, meter):
        stamp = exchange_stamp(venue, loads(line))
        if last is None:
            if stamp is None:
                if len(waiting) >= MAX_UNSTAMPED:
                    raise ConvertError(f"{path}: none of the first {MAX_UNSTAMPED} frames "
                                       "carries an exchange time stamp")
                waiting.append(line)
                continue
            last = stamp
            for data in waiting:
                yield Frame(last, stream, "recv", data)
            waiting.clear()
        last = max(last, stamp) if stamp is not None else last
        yield Frame(last, stream, "recv", line)
    if waiting:
        raise ConvertError(f"{path}: no frame carries an exchange time stamp, and a "
                           "capture needs a time for every frame")

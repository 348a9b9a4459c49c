"""cryptofeed raw v1 (text): one event per line, local time in epoch seconds.

Sample (``sample_data/BINANCE-b38f7c.0``, shortened)::

    configuration: {"l2_book":["BTC-AUD",...],...}
    wss://stream.binance.com:9443/stream?streams=btcaud@bookTicker/... <-> 1617647603.1
    1617647603.4249449: {"stream":"zilusdt@bookTicker","data":{...}}
    https://www.binance.com/api/v1/depth?symbol=ZILUSDT&limit=1000 -> 1617647603.8164911: {"lastUpdateId":499822895,...}
    wss://www.deribit.com/ws/api/v2 <- 1617644856.6: {"jsonrpc":"2.0",...}

``ts: {json}`` lines are received frames, ``wss://... <- ts: {json}`` sent ones,
``https://url -> ts: {json}`` REST replies (``rest`` frames with that url);
``wss://... <-> ts`` (connect), ``configuration:`` and blank lines are counted
and dropped. The stream is the file's base name (cryptofeed names v1 files after
the connection); a second connect line in the same file is a reconnect, whose
frames go to a new stream ``<base>#2`` (then ``#3``...) because per-connection
counters restart there. A REST reply belongs to the connection whose book it
synchronises: the stream current at its line.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator, Optional, Sequence

from sources.capture.inputs.common import Detected, Frame, Meter, base_name, lines, ms
from sources.capture.venues import venue_of_host

NAME = "cryptofeed-v1"
_WS = ("wss://", "ws://")
_HTTP = ("https://", "http://")


def _stamp(text: str) -> Optional[tuple]:
    """``(ms, data)`` of ``<epoch s>: <data>``, or None."""
    ts, sep, data = text.partition(": ")
    if not sep or not ts.replace(".", "", 1).isdigit():
        return None
    value = ms(ts)
    return (value, data) if value is not None else (None, data)


def sniff(first_line: str) -> bool:
    if first_line.startswith(("configuration:",) + _WS + _HTTP):
        return True
    return _stamp(first_line) is not None


def detect(first: Sequence[str], path: Path) -> Detected:
    for line in first:
        if line.startswith(_WS):
            url = line.split(" ", 1)[0]
            return Detected(venue_of_host(url), url)
    return Detected(None, None)


def read(path: Path, venue: str, skipped: Counter, meter: Optional[Meter] = None) -> Iterator[Frame]:
    base = base_name(path)
    stream = f"{venue}:{base}"
    connects = 0
    for line in lines(path, skipped, meter):
        if line.startswith("configuration:"):
            skipped["configuration"] += 1
            continue
        url, direction, stamped = None, "recv", line
        if line.startswith(_HTTP):
            url, arrow, stamped = line.partition(" -> ")
            direction = "rest" if arrow else ""
        elif line.startswith(_WS):
            if " <-> " in line and " <- " not in line:
                connects += 1
                stream = f"{venue}:{base}" if connects == 1 else f"{venue}:{base}#{connects}"
                skipped["connect"] += 1
                continue
            _, arrow, stamped = line.partition(" <- ")
            direction = "send" if arrow else ""
        got = _stamp(stamped) if direction else None
        if got is None:
            skipped["malformed"] += 1
        elif got[0] is None:
            skipped["bad_time"] += 1
        else:
            yield Frame(got[0], stream, direction, got[1], url)

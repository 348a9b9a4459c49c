"""cryptofeed v2 (JSON lines, often zstd): ``{"t": kind, "conn": .., "ts": <epoch s>, "data": "<frame>"}``.

Sample (``sample_data/COINBASE.jsonl.zst``, shortened)::

    {"t":"header","format":2,"exchange":"COINBASE","config":{...},"recorded":1786309548.026294}
    {"t":"http","conn":"COINBASE.http.1","ts":1786309548.026294,"url":"https://api.coinbase.com/...","data":"{...}"}
    {"t":"connect","conn":"COINBASE.ws.2","ts":1786309548.1,"addr":"wss://advanced-trade-ws.coinbase.com"}
    {"t":"send","conn":"COINBASE.ws.2","ts":1786309548.2,"data":"{\\"type\\":\\"subscribe\\",...}"}
    {"t":"recv","conn":"COINBASE.ws.2","ts":1786309548.3,"data":"{\\"channel\\":\\"l2_data\\",...}"}

``recv`` and ``send`` lines become frames of those directions, ``http`` lines
``rest`` frames with their ``url``; ``header`` and ``connect`` lines are counted
and dropped. The recorded ``conn`` becomes the stream, untouched: Coinbase
``sequence_num`` counts messages per connection, so splitting or merging
connections would invent or hide gaps.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator, Optional, Sequence

from sources.capture.inputs.common import Detected, Frame, Meter, lines, loads, ms
from sources.capture.venues import venue_of_host, venue_of_label

NAME = "cryptofeed-v2"
KINDS = frozenset({"header", "http", "connect", "send", "recv"})
_DIRECTIONS = {"recv": "recv", "send": "send", "http": "rest"}


def sniff(first_line: str) -> bool:
    obj = loads(first_line)
    return isinstance(obj, dict) and obj.get("t") in KINDS


def detect(first: Sequence[str], path: Path) -> Detected:
    label: Optional[str] = None
    for line in first:
        obj = loads(line)
        if not isinstance(obj, dict):
            continue
        if obj.get("t") == "header" and isinstance(obj.get("exchange"), str):
            label = obj["exchange"]
        elif obj.get("t") in ("connect", "send", "recv") and isinstance(obj.get("addr"), str):
            # The address tells the two Coinbase feeds apart; the header cannot.
            return Detected(venue_of_host(obj["addr"]) or venue_of_label(label or ""),
                            label or obj["addr"])
    return Detected(venue_of_label(label) if label else None, label)


def read(path: Path, venue: str, skipped: Counter, meter: Optional[Meter] = None) -> Iterator[Frame]:
    for line in lines(path, skipped, meter):
        rec = loads(line)
        kind = rec.get("t") if isinstance(rec, dict) else None
        direction = _DIRECTIONS.get(kind) if isinstance(kind, str) else None
        if direction is None:
            skipped[kind if kind in KINDS else "malformed"] += 1
            continue
        url = rec.get("url") if direction == "rest" else None
        if (not isinstance(rec.get("data"), str) or not isinstance(rec.get("conn"), str)
                or (direction == "rest" and not isinstance(url, str))):
            skipped["malformed"] += 1
            continue
        ts = ms(rec.get("ts"))
        if ts is None:
            skipped["bad_time"] += 1
            continue
        yield Frame(ts, f"{venue}:{rec['conn']}", direction, rec["data"], url)

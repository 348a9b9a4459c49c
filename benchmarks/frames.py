"""Received frames of an uncompressed lobstream capture, with the standard library only.

The benchmark's own captures (:mod:`benchmarks.data`) are plain JSON lines whose
``msg`` is the exchange's frame text verbatim. Programs that must not import
lobstream read them through this module: the minimal pipeline (the floor) and the
peer run under another interpreter (:mod:`benchmarks.cryptofeed_child`), so each
program decodes exactly the bytes a websocket delivered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple, Union

_MSG = b',"msg":'


def embedded_frame(line: bytes) -> bytes:
    """The exchange's frame text inside a capture line (``...,"msg":FRAME}``)."""
    start = line.index(_MSG) + len(_MSG)
    end = line.rstrip().rindex(b"}")
    return line[start:end]


def received(path: Union[str, Path]) -> List[Tuple[float, bytes]]:
    """``(ts_recv ms, raw frame)`` of every received frame, in file order."""
    out = []
    for line in Path(path).read_bytes().splitlines():
        cut = line.find(_MSG)
        if cut < 0:
            continue  # the header line, or a frame without a message
        head = json.loads(line[:cut] + b"}")
        if head.get("dir", "recv") == "recv":
            out.append((float(head["ts"]), embedded_frame(line)))
    return out

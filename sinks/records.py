"""How records are written: one JSON object per line.

Every sink serialises through here so a summary looks the same in a file, on
stdout or (later) in a Kafka message. Records are the plain dicts of
:mod:`state.product`; ``type`` says which kind (summary, status, alert).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple

import orjson

Record = Dict[str, Any]
Keyed = Tuple[str, Record]


def to_lines(items: Iterable[Keyed]) -> bytes:
    """Serialise a batch as newline-terminated JSON, ready for one ``write``."""
    dumps = orjson.dumps
    return b"".join([dumps(rec) + b"\n" for _, rec in items])

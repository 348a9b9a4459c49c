"""pandas loaders for lobstream's outputs: one DataFrame per record kind, typed, times in UTC.

The flow writes flat JSON objects with a ``type`` field (the ``jsonl`` sink, one
file per product; the ``stdout`` sink, everything on one stream, alerts
included). :func:`load` reads any mix of those files and directories (plain or
gzip), keeps the chosen products and time range, and returns a frame per kind
(``summary``, ``status``, ``trade``, ``ticker``, ``bar``, ``alert``) with the
columns in the documented order and proper dtypes: times as
``datetime64[ns, UTC]``, prices and sizes ``float64``, counts nullable ``Int64``,
labels ``category``, flags ``boolean``. Fields a kind does not document are
kept (as ``object``), so a newer writer never breaks an older reader.

Bars are revised by late trades (``revision`` 1, 2...): by default only each
bar's latest revision is kept, as an upserting store would.
"""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import orjson
import pandas as pd

from state.bars import BAR_FIELDS
from state.metrics import SUMMARY_FIELDS

PathLike = Union[str, Path]

TIME = "datetime64[ns, UTC]"
CAT = "category"
FLOAT = "float64"
INT = "Int64"  # nullable: a count or id may be missing
BOOL = "boolean"
STR = "string"

#: Every documented field of every kind, with its dtype; times are epoch ms in the files.
SCHEMAS: Dict[str, Dict[str, str]] = {
    "summary": {**{f: FLOAT for f in SUMMARY_FIELDS},
                "type": CAT, "venue": CAT, "product": CAT, "ts_exchange": TIME, "ts_recv": TIME,
                "seq": INT, "bid_levels": INT, "ask_levels": INT, "depth_limit": INT},
    "status": {"type": CAT, "venue": CAT, "product": CAT, "ts_recv": TIME, "state": CAT,
               "reason": CAT, "detail": STR},
    "trade": {"type": CAT, "venue": CAT, "product": CAT, "ts_exchange": TIME, "ts_recv": TIME,
              "trade_id": STR, "price": FLOAT, "size": FLOAT, "side": CAT, "base_size": FLOAT,
              "notional": FLOAT, "fills": INT},
    "ticker": {"type": CAT, "venue": CAT, "product": CAT, "ts_exchange": TIME, "ts_recv": TIME,
               "mark": FLOAT, "index": FLOAT, "funding_rate": FLOAT, "last": FLOAT},
    "bar": {**{f: FLOAT for f in BAR_FIELDS},
            "type": CAT, "venue": CAT, "product": CAT, "start": TIME, "end": TIME,
            "trades": INT, "buy_trades": INT, "sell_trades": INT, "fills": INT,
            "missing_trades": INT, "book_updates": INT, "revision": INT, "complete": BOOL,
            "source": CAT},
    "alert": {"type": CAT, "venue": CAT, "product": CAT, "ts_recv": TIME, "kind": CAT,
              "spread_bps": FLOAT, "detail": STR},
}
KINDS = tuple(SCHEMAS)
#: The time a record is filtered by (and sorted on): exchange time where there is one.
TIME_OF = {"summary": "ts_exchange", "trade": "ts_exchange", "ticker": "ts_exchange",
           "bar": "start", "status": "ts_recv", "alert": "ts_recv"}


def files(paths: Iterable[PathLike]) -> List[Path]:
    """Files as given, directories expanded to their ``*.jsonl`` and ``*.jsonl.gz``."""
    out: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.name.endswith((".jsonl", ".jsonl.gz"))))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def records(paths: Iterable[PathLike]) -> Iterator[dict]:
    """Every record in the files; lines that are not JSON objects with a type are
    skipped (a line cut short by a crash, a human line mixed into a stdout capture)."""
    for path in files(paths):
        with _open(path) as f:
            for line in f:
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("type"), str):
                    yield rec


def matches(venue: str, product: str, wanted: Sequence[str]) -> bool:
    """Whether ``venue:product`` is one of ``wanted`` (``venue:product`` or ``product``)."""
    return not wanted or f"{venue}:{product}" in wanted or product in wanted


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``2024-08-08T23:54:30``, ``2024-08-08 23:54:30.5+00:00``);
    UTC when it names no zone. ValueError names the expected form."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r}: expected an ISO 8601 time such as 2024-08-08T23:54:30 "
                         "(UTC unless it names a zone)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def frame(kind: str, recs: List[dict]) -> pd.DataFrame:
    """The records of one kind as a typed DataFrame (see :data:`SCHEMAS`)."""
    schema = SCHEMAS[kind]
    df = pd.DataFrame.from_records(recs)
    for column in schema:
        if column not in df.columns:
            df[column] = None
    extra = [c for c in df.columns if c not in schema]
    df = df[list(schema) + extra]
    for column, dtype in schema.items():
        if dtype == TIME:
            ms = pd.to_numeric(df[column], errors="coerce").astype(FLOAT)
            df[column] = pd.to_datetime(ms, unit="ms", utc=True).astype(TIME)
        elif dtype in (FLOAT, INT):
            number = pd.to_numeric(df[column], errors="coerce")
            df[column] = number.round().astype(INT) if dtype == INT else number.astype(FLOAT)
        elif dtype == BOOL:
            df[column] = df[column].astype(BOOL)
        else:
            df[column] = df[column].astype(dtype)
    return df


def load(paths: Iterable[PathLike], kinds: Optional[Sequence[str]] = None,
         products: Sequence[str] = (), start: Optional[datetime] = None,
         end: Optional[datetime] = None, revisions: bool = False) -> Dict[str, pd.DataFrame]:
    """The outputs in ``paths`` split by kind (every kind in :data:`KINDS` is a key,
    an empty frame when absent), for the given products and ``[start, end)``,
    each sorted by its time (:data:`TIME_OF`). ``revisions``: keep every revision
    of a bar, not only the latest."""
    wanted = set(kinds or KINDS)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    by_kind: Dict[str, List[dict]] = {k: [] for k in KINDS}
    lo = start.timestamp() * 1000.0 if start is not None else None
    hi = end.timestamp() * 1000.0 if end is not None else None
    for rec in records(paths):
        kind = rec["type"]
        if kind not in wanted or not matches(str(rec.get("venue")), str(rec.get("product")),
                                             products):
            continue
        t = rec.get(TIME_OF[kind]) if rec.get(TIME_OF[kind]) is not None else rec.get("ts_recv")
        if (lo is not None or hi is not None) and not isinstance(t, (int, float)):
            continue
        if (lo is not None and t < lo) or (hi is not None and t >= hi):
            continue
        by_kind[kind].append(rec)
    out = {}
    for kind, recs in by_kind.items():
        df = frame(kind, recs)
        if kind == "bar" and not revisions and len(df):
            df = df.sort_values("revision").drop_duplicates(
                ["venue", "product", "interval_s", "start"], keep="last")
        out[kind] = df.sort_values(TIME_OF[kind], kind="stable").reset_index(drop=True)
    return out


def product_names(frames: Dict[str, pd.DataFrame]) -> List[Tuple[str, str]]:
    """Every ``(venue, product)`` in the frames, sorted."""
    names = set()
    for df in frames.values():
        if len(df):
            names.update(zip(df["venue"].astype(str), df["product"].astype(str)))
    return sorted(names)

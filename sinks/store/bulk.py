"""Captures straight into the store: each day they cover becomes a new version.

A capture is replayed through the same flow as a live feed (books, summaries,
trades, bars: the same numbers), as fast as it can be read, with the store sink in
``replace`` mode: the first write of the import to a partition-day opens a fresh
version of it, so importing the same capture twice gives the same day, and an
import of a corrected capture supersedes the earlier one while every read as of
a time before the import still sees the old day. Files in another recorder's
format are first converted to a capture (:mod:`sources.capture.convert`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence, Tuple

from bytewax.testing import run_main

from dataflows.config import Config
from dataflows.orderbook import build_flow
from sinks.store import KINDS
from sources.capture.convert import convert
from sources.capture.format import read_header
from sources.capture.reader import NotACaptureError


def is_capture(path: Path) -> bool:
    """Whether the file ``path`` is a lobstream capture (else: convert it)."""
    try:
        read_header(path)
        return True
    except NotACaptureError:
        return False


def import_captures(root: str, paths: Sequence[str], kinds: Tuple[str, ...] = KINDS,
                    bar_intervals: Tuple[int, ...] = (60_000,), depth: int = 10,
                    venue: Optional[str] = None) -> None:
    """Replay ``paths`` (captures, or other recorders' files to convert, with
    ``venue`` if their content names none) into the store at ``root``."""
    with tempfile.TemporaryDirectory(prefix="lobstream-import-") as tmp:
        captures = []
        for i, p in enumerate(paths):
            path = Path(p)
            if path.is_dir() or is_capture(path):
                captures.append(str(path))
            else:
                out = Path(tmp) / f"converted-{i}.jsonl.gz"
                convert(path, out, venue=venue)
                captures.append(str(out))
        cfg = Config(replay=captures, sinks=["store"], depth=depth, bar_intervals=bar_intervals)
        cfg.store.update(root=root, mode="replace", kinds=list(kinds))
        run_main(build_flow(cfg))

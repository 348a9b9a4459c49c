"""The order book of one product at a chosen time, rebuilt from captures.

For the depth chart. The captures are replayed exactly as the flow replays them
(each recorded connection through its own :class:`~sources.feed.feed.Feed`, the
product's events through a :class:`~state.product.ProductState`), in receive-time
order, up to the first frame received after the chosen time. So the book is the
one the flow held at that moment, with the same snapshot, sequence and
crossed-book checks: a book that was invalid then is reported as such, never
drawn from stale levels.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Tuple, Union

from sources.capture.format import capture_files, list_streams, read_capture
from sources.feed.feed import Feed
from sources.feed.reporting import BadInput
from sources.venues import get_venue
from state.events import Level
from state.product import ProductState

PathLike = Union[str, Path]


class BookAt(NamedTuple):
    """One product's book when ``ts`` (epoch ms) was reached; ``valid`` False when
    the flow would not have trusted it (no snapshot yet, a gap, a crossed book)."""

    venue: str
    product: str
    ts: Optional[float]
    valid: bool
    bids: List[Level]  # best first
    asks: List[Level]  # best first


def _name(text: str) -> Tuple[Optional[str], str]:
    venue, sep, product = text.partition(":")
    return (venue, product) if sep else (None, text)


def book_at(paths: Iterable[PathLike], product: str, at: Optional[datetime] = None) -> BookAt:
    """The book of ``product`` (``venue:PRODUCT`` or ``PRODUCT``) at ``at`` (its
    last state in the captures when None). ValueError if no capture holds it."""
    files = capture_files(paths)
    streams = list_streams(files)
    venue, wanted = _name(product)
    feeds = {s: Feed(get_venue(info.venue), None, BadInput(), s) for s, info in streams.items()
             if venue is None or info.venue == venue}
    if not feeds:
        raise ValueError(f"no capture holds venue {venue!r}")
    limit = at.timestamp() * 1000.0 if at is not None else float("inf")
    state = ProductState()
    found: Optional[str] = None
    reached: Optional[float] = None
    frames = heapq.merge(*(read_capture(f, set(feeds), validate=False) for f in files),
                         key=lambda fr: fr.ts)
    for frame in frames:
        if frame.ts > limit:
            break
        feed = feeds[frame.stream]
        out: list = []
        if frame.dir == "recv":
            feed.on_frame(frame.raw, frame.ts, out)
        elif frame.dir == "rest" and frame.url is not None:
            feed.on_rest(frame.url, frame.raw, frame.ts, out)
        feed.outbox.clear()
        for _, item in out:
            if item.product == wanted and (found is None or found == item.venue):
                found = item.venue
                state.on_item(item, 10, float("inf"))
        reached = frame.ts
    if found is None:
        raise ValueError(f"{product}: not in the captures (before the chosen time)")
    book = state.book
    return BookAt(found, wanted, reached, state.valid,
                  [(p, book.bids[p]) for p in reversed(book.bids)],
                  [(p, book.asks[p]) for p in book.asks])

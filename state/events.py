"""Venue-neutral records that flow between lobstream's stages.

Every venue parser turns raw frames into :class:`BookEvent`; everything downstream
(book, metrics, sinks) sees only these types, so adding a venue never touches the
book or the metrics.

Prices and sizes are floats: parsing a decimal string to a float is exact to the
15 significant digits every venue quotes in, it keeps distinct price levels
distinct, and it is an order of magnitude cheaper than ``Decimal`` on the hot path.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

#: A price level: ``(price, size)``. ``size`` is the new absolute total resting at
#: that price (never a delta); ``0.0`` removes the level.
Level = Tuple[float, float]

SNAPSHOT = "snapshot"
UPDATE = "update"
#: A complete top-N book that is part of the stream, not a resync (Deribit's grouped
#: ``book.{instrument}.none.{depth}.{interval}`` channel): it replaces the book like a
#: snapshot, but its order flow imbalance against the previous top is meaningful.
REFRESH = "refresh"


class BookEvent(NamedTuple):
    """One book message for one product, after parsing.

    ``seq``/``prev_seq`` carry the venue's per-book sequence chain where it has one
    (Deribit ``change_id``/``prev_change_id``; Binance spot ``u`` and ``U - 1``,
    futures ``u`` and ``pu`` with ``first_seq`` = ``U``), and the connection-level
    counter for Coinbase Advanced Trade (``sequence_num``, with ``prev_seq`` None).
    The checks themselves live in :mod:`state.sync`. ``depth_limit`` is N when the
    venue only sends the N best levels per side (a depth-limited book), else None.
    """

    kind: str
    venue: str
    product: str
    ts_exchange: Optional[float]
    ts_recv: float
    seq: Optional[int]
    prev_seq: Optional[int]
    bids: List[Level]
    asks: List[Level]
    first_seq: Optional[int] = None
    depth_limit: Optional[int] = None


class BookStatus(NamedTuple):
    """A change in whether a product's book can be trusted.

    Emitted once when a book becomes invalid (``state="invalid"``, with the reason:
    ``gap``, ``bad_input``, ``crossed``, ``locked``, ``disconnected``, ``overflow``,
    ``refused``, ``delisted``) and once when a fresh snapshot rebuilds it
    (``state="synced"``). While a book is invalid no summary is produced from it.
    """

    venue: str
    product: str
    ts_recv: float
    state: str
    reason: str
    detail: str


def book_key(venue: str, product: str) -> str:
    """The Bytewax routing key of a product: ``"venue:product"``."""
    return f"{venue}:{product}"

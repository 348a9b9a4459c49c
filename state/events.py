"""Venue-neutral records that flow between lobstream's stages.

Every venue parser turns raw frames into :class:`BookEvent`; everything downstream
(book, metrics, sinks) sees only these types, so adding a venue never touches the
book or the metrics.

Prices and sizes are floats: parsing a decimal string to a float is exact to the
15 significant digits every venue quotes in, it keeps distinct price levels
distinct, and it is an order of magnitude cheaper than ``Decimal`` on the hot path.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple, Union

#: A price level: ``(price, size)``. ``size`` is the new absolute total resting at
#: that price (never a delta); ``0.0`` removes the level.
Level = Tuple[float, float]
#: One side of a book event: level changes in wire order, or (a snapshot only) a
#: ready ``price -> size`` dict holding no zero size, which a parser builds where
#: that saves a tuple per level (Coinbase's 46,000-level snapshots).
Levels = Union[List[Level], Dict[float, float]]

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
    ``bids``/``asks`` are lists of level changes, except that a snapshot's may be
    ``price -> size`` dicts (:data:`Levels`).
    """

    kind: str
    venue: str
    product: str
    ts_exchange: Optional[float]
    ts_recv: float
    seq: Optional[int]
    prev_seq: Optional[int]
    bids: Levels
    asks: Levels
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


class Trade(NamedTuple):
    """One trade print, venue-neutral.

    ``side`` is the **aggressor** (taker) side, ``buy`` or ``sell``, whatever the
    venue's own field means (each venue home documents where it comes from).
    ``size`` is in the venue's wire unit; ``base_size`` and ``notional`` are the
    same trade in base currency and in quote currency, converted by the venue's
    instrument rules (inverse contracts in USD or in contracts). ``seq`` is the
    venue's sequential trade id where it has one (Binance ``a``/``t``, Deribit
    ``trade_seq``, Coinbase Exchange ``trade_id``), for gap detection; ``fills``
    the number of underlying fills (Binance ``aggTrade``: ``l - f + 1``).
    """

    venue: str
    product: str
    ts_exchange: float
    ts_recv: float
    trade_id: str
    price: float
    size: float
    side: str
    base_size: float
    notional: float
    seq: Optional[int] = None
    fills: int = 1


class Ticker(NamedTuple):
    """Mark, index and funding of a derivative, or a spot ticker's last price;
    fields the venue does not send are None."""

    venue: str
    product: str
    ts_exchange: float
    ts_recv: float
    mark: Optional[float]
    index: Optional[float]
    funding_rate: Optional[float]
    last: Optional[float]


class Clock(NamedTuple):
    """The exchange time reached on a product's connection (any frame that carries
    a time: heartbeats, other products' updates, replies). It advances the
    product's event-time watermark, so a quiet product's bars still close."""

    venue: str
    product: str
    ts_exchange: float

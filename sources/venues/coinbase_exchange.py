"""Coinbase Exchange market data (``ws-feed.exchange.coinbase.com``): the public
``level2_batch`` channel, parsed.

Wire format (docs.cdp.coinbase.com, Exchange websocket channels): every message is
a flat object with a ``type``. A book starts with ``snapshot`` (``bids``/``asks`` as
``[price, size]``), then ``l2update`` messages whose ``changes`` are
``[side, price, size]`` with side ``buy``/``sell`` and ``size`` the new level total
(``"0"`` removes it). ``level2_batch`` has exactly ``level2``'s schema, sent in
50 ms batches; ``level2`` itself needs authentication since 2023-08-01, which
lobstream does not do, so an unauthenticated ``level2`` subscribe is answered with
an ``error`` and the configuration only offers ``level2_batch``.

Limitation: ``snapshot`` and ``l2update`` carry no sequence number (only the
``full`` channel does), so a dropped ``l2update`` cannot be detected from the
stream and ``seq`` is always None. lobstream relies on the feed's delivery
guarantee and rebuilds every book from the fresh snapshot that the resubscription
after a disconnect brings. Heartbeats do carry a ``sequence``, but it is the
product's position in the full feed, which moves by more than one between
heartbeats, so it cannot reveal a lost book update either.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from sources.venues.coinbase import iso_ms
from sources.venues.frames import (BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, FrameError, Parsed,
                            levels)
from state.events import SNAPSHOT, UPDATE, BookEvent, Level

VENUE = "coinbase_exchange"
DEFAULT_URL = "wss://ws-feed.exchange.coinbase.com"
DEFAULT_CHANNEL = "level2_batch"
#: Book channels lobstream can subscribe without credentials.
PUBLIC_CHANNELS = (DEFAULT_CHANNEL,)
HEARTBEAT_CHANNEL = "heartbeat"

#: Message types of channels lobstream does not consume but that are legitimate traffic.
_OTHER_TYPES = frozenset(("ticker", "match", "last_match", "status", "auction", "rfq_match"))


def parse(msg: Any, ts_recv: float) -> Parsed:
    """Parse one decoded Exchange message."""
    if not isinstance(msg, dict):
        raise FrameError("unknown_type", f"expected a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    if kind == "l2update" or kind == "snapshot":
        return Parsed(BOOK, None, [_book_event(msg, ts_recv)])
    if kind == "heartbeat":
        return Parsed(HEARTBEAT, None, [])
    if kind == "subscriptions":
        return Parsed(REPLY, None, [], detail=str(msg.get("channels")))
    if kind in _OTHER_TYPES:
        return Parsed(IGNORED, None, [])
    if kind == "error":
        reason = msg.get("reason")
        text = str(msg.get("message", "error"))
        return Parsed(ERROR, None, [], detail=f"{text}: {reason}" if reason else text)
    raise FrameError("unknown_type", f"unknown message type {kind!r}")


def _book_event(msg: Dict[str, Any], ts_recv: float) -> BookEvent:
    product = msg.get("product_id")
    products = [product] if isinstance(product, str) else []
    try:
        if not products:
            raise KeyError("product_id")
        if msg["type"] == "snapshot":
            # A snapshot has no time of its own on the wire.
            return BookEvent(SNAPSHOT, VENUE, product, None, ts_recv, None, None,
                             levels(msg["bids"], 0, 1), levels(msg["asks"], 0, 1))
        bids, asks = _changes(msg["changes"])
        return BookEvent(UPDATE, VENUE, product, iso_ms(msg["time"]), ts_recv, None, None,
                         bids, asks)
    except FrameError as ex:
        raise FrameError(ex.kind, str(ex), None, products) from None
    except (KeyError, TypeError, ValueError, IndexError) as ex:
        raise FrameError("bad_level", f"unreadable {msg.get('type')}: {type(ex).__name__}: {ex}",
                         None, products) from None


def _changes(changes: List[Any]) -> Tuple[List[Level], List[Level]]:
    """Split ``[side, price, size]`` entries into bid and ask levels, keeping their order."""
    bids: List[Any] = []
    asks: List[Any] = []
    for change in changes:
        side = change[0]
        if side == "buy":
            bids.append(change)
        elif side == "sell":
            asks.append(change)
        else:
            raise FrameError("bad_level", f"unknown side {side!r}")
    return levels(bids, 1, 2), levels(asks, 1, 2)


def subscribe(products: List[str], channel: str = DEFAULT_CHANNEL) -> List[Dict[str, Any]]:
    """The message that starts a connection: the book channel for the products, plus
    ``heartbeat``, so a quiet product still shows the connection is alive."""
    return [{"type": "subscribe", "product_ids": list(products),
             "channels": [channel, HEARTBEAT_CHANNEL]}]


def resubscribe(product: str, channel: str = DEFAULT_CHANNEL) -> List[Dict[str, Any]]:
    """Messages that make the server send a fresh snapshot of one product."""
    return [{"type": kind, "product_ids": [product], "channels": [channel]}
            for kind in ("unsubscribe", "subscribe")]

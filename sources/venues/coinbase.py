"""Coinbase Advanced Trade market data: the ``level2`` channel, parsed.

Wire format (docs.cdp.coinbase.com, Advanced Trade websocket channels): every
message is ``{channel, client_id, timestamp, sequence_num, events}``; book data
arrives on ``channel == "l2_data"`` as ``snapshot``/``update`` events whose
``updates[]`` carry ``side``, ``price_level`` and ``new_quantity`` (the new level
total; ``"0"`` removes it). The ask side is spelled ``offer`` on the wire (the
docs only show ``bid``; some clients expect ``ask``), so both are accepted.

``sequence_num`` is one counter per connection across every channel, heartbeats
included, which is why lobstream opens one connection per product: a gap can
then be pinned on exactly one book.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

from sources.venues.frames import (BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, FrameError, Parsed)
from state.events import SNAPSHOT, UPDATE, BookEvent, Level

VENUE = "coinbase"
DEFAULT_URL = "wss://advanced-trade-ws.coinbase.com"

#: Channels lobstream does not consume but that are legitimate traffic.
_OTHER_CHANNELS = frozenset(("ticker", "ticker_batch", "market_trades", "candles", "status"))
_ASK = frozenset(("offer", "ask"))
_KINDS = {"snapshot": SNAPSHOT, "update": UPDATE}
_INF = float("inf")


def iso_ms(text: str) -> float:
    """RFC 3339 timestamp (``...Z``, up to nanoseconds) to epoch milliseconds."""
    return datetime.fromisoformat(text).timestamp() * 1000.0


def parse(msg: Any, ts_recv: float) -> Parsed:
    """Parse one decoded Advanced Trade message."""
    if not isinstance(msg, dict):
        raise FrameError("unknown_type", f"expected a JSON object, got {type(msg).__name__}")
    channel = msg.get("channel")
    seq = msg.get("sequence_num")
    if channel == "l2_data":
        return Parsed(BOOK, seq, _book_events(msg, seq, ts_recv))
    if channel == "heartbeats":
        return Parsed(HEARTBEAT, seq, [])
    if channel == "subscriptions":
        return Parsed(REPLY, seq, [], detail=str(msg.get("events")))
    if channel in _OTHER_CHANNELS:
        return Parsed(IGNORED, seq, [])
    if msg.get("type") == "error":
        reason = msg.get("reason")
        text = str(msg.get("message", "error"))
        return Parsed(ERROR, seq, [], detail=f"{text}: {reason}" if reason else text)
    # The frame still used up a sequence_num: pass it on so it is not taken for a gap.
    raise FrameError("unknown_type", f"unknown channel {channel!r}", seq)


def _book_events(msg: Dict[str, Any], seq: Optional[int], ts_recv: float) -> List[BookEvent]:
    try:
        return [_book_event(ev, msg, seq, ts_recv) for ev in msg["events"]]
    except FrameError as ex:
        raise FrameError(ex.kind, str(ex), seq, _products(msg)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as ex:
        raise FrameError("bad_level", f"unreadable l2_data: {type(ex).__name__}: {ex}",
                         seq, _products(msg)) from None


def _book_event(ev: Dict[str, Any], msg: Dict[str, Any], seq: Optional[int],
                ts_recv: float) -> BookEvent:
    kind = _KINDS.get(ev.get("type"))
    if kind is None:
        raise FrameError("unknown_type", f"unknown l2_data event type {ev.get('type')!r}")
    bids: List[Level] = []
    asks: List[Level] = []
    updates = ev["updates"]
    for u in updates:
        side = u["side"]
        price = float(u["price_level"])
        size = float(u["new_quantity"])
        if not (size >= 0.0 and price >= 0.0) or size == _INF or price == _INF:
            raise FrameError("bad_level", f"invalid level {u!r}")
        if side == "bid":
            bids.append((price, size))
        elif side in _ASK:
            asks.append((price, size))
        else:
            raise FrameError("bad_level", f"unknown side {side!r}")
    if kind is SNAPSHOT or not updates:
        ts_exchange = iso_ms(msg["timestamp"])
    else:
        ts_exchange = iso_ms(updates[0]["event_time"])
    return BookEvent(kind, VENUE, ev["product_id"], ts_exchange, ts_recv, seq, None, bids, asks)


def _products(msg: Dict[str, Any]) -> List[str]:
    """The products a (possibly broken) l2_data message was about."""
    try:
        return [ev["product_id"] for ev in msg["events"]
                if isinstance(ev, dict) and isinstance(ev.get("product_id"), str)]
    except (KeyError, TypeError, AttributeError):
        return []


def subscribe(products: List[str]) -> List[Dict[str, Any]]:
    """Messages that start a connection: ``level2`` for the products, plus
    ``heartbeats``, without which idle channels are closed after 60-90 s."""
    return [
        {"type": "subscribe", "product_ids": list(products), "channel": "level2"},
        {"type": "subscribe", "channel": "heartbeats"},
    ]


def resubscribe(product: str) -> List[Dict[str, Any]]:
    """Messages that make the server send a fresh snapshot of one product."""
    return [
        {"type": "unsubscribe", "product_ids": [product], "channel": "level2"},
        {"type": "subscribe", "product_ids": [product], "channel": "level2"},
    ]

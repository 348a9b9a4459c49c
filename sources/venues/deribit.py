"""Deribit JSON-RPC v2 market data: ``book.{instrument}.{interval}``, parsed.

Wire format (docs.deribit.com, subscriptions/orderbook): notifications are
``{"method": "subscription", "params": {"channel", "data"}}``; ``data`` carries
``instrument_name``, ``timestamp`` (ms), ``change_id``, and on every message but the
first ``prev_change_id``, which must equal the previous ``change_id``. Entries are
``[action, price, amount]`` with action ``new``/``change``/``delete`` and ``amount``
the new level total. The first message is the full book: it is recognised by the
missing ``prev_change_id`` (older API versions omit ``type``), which also makes the
grouped ``book.{inst}.{group}.{depth}.{interval}`` channel work: each of its
messages is a complete top-N book without ``prev_change_id``.

``raw`` books need authentication; public clients use ``100ms``.
"""

from __future__ import annotations

from itertools import count
from typing import Any, Dict, List

from sources.venues.frames import (BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, TEST_REQUEST,
                            FrameError, Parsed)
from state.events import SNAPSHOT, UPDATE, BookEvent, Level

VENUE = "deribit"
DEFAULT_URL = "wss://www.deribit.com/ws/api/v2"
DEFAULT_INTERVAL = "100ms"
#: Seconds between the server's heartbeats; 10 is the server's minimum.
HEARTBEAT_INTERVAL = 10

_ACTIONS = frozenset(("new", "change", "delete"))
_INF = float("inf")
_ids = count(1)


def parse(msg: Any, ts_recv: float) -> Parsed:
    """Parse one decoded Deribit message."""
    if not isinstance(msg, dict):
        raise FrameError("unknown_type", f"expected a JSON object, got {type(msg).__name__}")
    method = msg.get("method")
    params = msg.get("params") or {}
    if not isinstance(params, dict):
        raise FrameError("unknown_type", f"params is a {type(params).__name__}, not an object")
    if method == "subscription":
        channel = params.get("channel")
        if isinstance(channel, str) and channel.startswith("book."):
            return Parsed(BOOK, None, [_book_event(params.get("data"), ts_recv)])
        return Parsed(IGNORED, None, [])
    if method == "heartbeat":
        kind = TEST_REQUEST if params.get("type") == "test_request" else HEARTBEAT
        return Parsed(kind, None, [])
    if "id" in msg:
        err = msg.get("error")
        if err is not None:
            detail = f"{err.get('code')} {err.get('message')}" if isinstance(err, dict) else str(err)
            if isinstance(err, dict) and err.get("data"):
                detail += f" {err['data']}"
            return Parsed(ERROR, None, [], ref=msg["id"], detail=detail)
        return Parsed(REPLY, None, [], ref=msg["id"], detail=str(msg.get("result")))
    raise FrameError("unknown_type", f"unknown message (method {method!r})")


def _book_event(data: Any, ts_recv: float) -> BookEvent:
    try:
        product = data["instrument_name"]
        prev = data.get("prev_change_id")
        event = BookEvent(SNAPSHOT if prev is None else UPDATE, VENUE, product,
                          float(data["timestamp"]), ts_recv, data["change_id"], prev,
                          _levels(data["bids"]), _levels(data["asks"]))
    except FrameError as ex:
        raise FrameError(ex.kind, str(ex), None, _product(data)) from None
    except (KeyError, TypeError, ValueError, IndexError) as ex:
        raise FrameError("bad_level", f"unreadable book data: {type(ex).__name__}: {ex}",
                         None, _product(data)) from None
    return event


def _levels(entries: List[Any]) -> List[Level]:
    out: List[Level] = []
    for entry in entries:
        if len(entry) == 3:
            action, price, amount = entry
            if action not in _ACTIONS:
                raise FrameError("bad_level", f"unknown action {action!r}")
            if action == "delete":
                amount = 0.0
        else:  # grouped channels send plain [price, amount]
            price, amount = entry
        p = float(price)
        s = float(amount)
        if not (s >= 0.0 and p >= 0.0) or s == _INF or p == _INF:
            raise FrameError("bad_level", f"invalid level {entry!r}")
        out.append((p, s))
    return out


def _product(data: Any) -> List[str]:
    name = data.get("instrument_name") if isinstance(data, dict) else None
    return [name] if isinstance(name, str) else []


def _request(method: str, params: Dict[str, Any]) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}


def channel(product: str, interval: str = DEFAULT_INTERVAL) -> str:
    return f"book.{product}.{interval}"


def subscribe(products: List[str], interval: str = DEFAULT_INTERVAL) -> List[Dict[str, Any]]:
    """Messages that start a connection: heartbeats on, then the book channels."""
    return [
        _request("public/set_heartbeat", {"interval": HEARTBEAT_INTERVAL}),
        _request("public/subscribe", {"channels": [channel(p, interval) for p in products]}),
    ]


def resubscribe(product: str, interval: str = DEFAULT_INTERVAL) -> List[Dict[str, Any]]:
    """Messages that make the server send a fresh full book of one instrument."""
    ch = [channel(product, interval)]
    return [_request("public/unsubscribe", {"channels": ch}),
            _request("public/subscribe", {"channels": ch})]


def answer_test_request() -> Dict[str, Any]:
    """The reply to a ``test_request``; without it the server closes the connection."""
    return _request("public/test", {})

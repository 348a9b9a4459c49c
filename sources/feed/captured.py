"""Driving a :class:`~sources.feed.feed.Feed` from captured lines (file replay, Kafka).

A live transport tells a feed more than its frames: that the connection opened or
closed, that the dataflow fell behind and frames were dropped, that the book step
asked for a resync. Each of those changes what the feed does with the frames that
follow (a book waiting for a snapshot drops its deltas, a Binance book buffers
them). A capture that held only frames would leave a replay guessing, and a replay
that guesses wrong builds a different book than the live run did. So the Kafka
capture also writes ``event`` lines (:mod:`sources.capture.format`), one per such
call, and :func:`deliver` makes the same call on the replaying feed:

* ``{"event":"open","products":[..]}``: the connection (re)opened, every book on it
  waits for a fresh snapshot (:meth:`Feed.connected`). An ``open`` that follows no
  ``close`` means the capture stopped without recording the end of the previous
  connection (``kill -9``): the books still synced get a ``disconnected`` status
  first, so a consumer never sees a silent gap;
* ``{"event":"close","reason":".."}``: :meth:`Feed.disconnected`;
* ``{"event":"resync","product":"..","reason":"..","detail":".."}``: the capture
  resynchronised a product for a reason the frames do not show (a request from an
  analytics flow, a periodic refresh of a REST-snapshot venue): :meth:`Feed.resync`;
* ``{"event":"overflow","dropped":N}``: the capture fell behind and dropped ``N``
  frames of the connection: :meth:`Feed.overflow`;
* ``{"event":"remove","products":[..],"reason":".."}``: the capture stopped
  following products (delisted): :meth:`Feed.remove`. (Products the capture adds
  need no event: a replaying feed learns a product when it first appears.)

Event lines are untrusted like any frame: a malformed one is counted, logged once
per kind (``bad_event``) and skipped.

A replaying feed sends nothing; :class:`ListenOnly` is its protocol. It also keeps
the feed from pinning a recorded answer on a request of its own: a replaying
Deribit feed that numbered its (unsent) resubscriptions 1, 2, ... would otherwise
take the recorded answer to the live connection's request 1 for its own.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import orjson

from sources.capture.codec import CaptureFrame, FrameDecodeError
from sources.feed.feed import Feed, Keyed
from sources.venues.base import Message, Protocol, safe_text, valid_product

OPEN = "open"
CLOSE = "close"
RESYNC = "resync"
OVERFLOW = "overflow"
REMOVE = "remove"
#: Products one ``remove`` event may name (a connection carries at most 500).
MAX_PRODUCTS = 1000

#: Longest reason or detail text kept from an event line.
MAX_TEXT = 300
#: Why the books of a connection that was never closed are no longer synced.
UNCLOSED = ("the capture's previous connection ended without a recorded close (the capture "
            "stopped abruptly); frames may be missing")


def open_event(products: Sequence[str]) -> bytes:
    """The ``msg`` of an ``open`` event line."""
    return orjson.dumps({"event": OPEN, "products": list(products)})


def close_event(reason: str) -> bytes:
    return orjson.dumps({"event": CLOSE, "reason": reason})


def resync_event(product: str, reason: str, detail: str) -> bytes:
    return orjson.dumps({"event": RESYNC, "product": product, "reason": reason,
                         "detail": detail})


def overflow_event(dropped: int) -> bytes:
    return orjson.dumps({"event": OVERFLOW, "dropped": dropped})


def remove_event(products: Sequence[str], reason: str) -> bytes:
    return orjson.dumps({"event": REMOVE, "products": list(products), "reason": reason})


class ListenOnly(Protocol):
    """The protocol of a feed that only reads what another connection received:
    no message to send, no request of its own to pin an answer or error on."""

    def open(self, products: Sequence[str]) -> List[Message]:
        return []

    def subscribe(self, products: Sequence[str]) -> List[Message]:
        return []

    def unsubscribe(self, products: Sequence[str]) -> List[Message]:
        return []


def listen_only(feed: Feed) -> Feed:
    """``feed`` with its protocol replaced by :class:`ListenOnly`."""
    feed.protocol = ListenOnly(feed.protocol.settings)
    return feed


def deliver(feed: Feed, frame: CaptureFrame, out: List[Keyed]) -> None:
    """Hand one captured line to ``feed`` as the live transport did."""
    direction = frame.dir
    if direction == "recv":
        feed.on_frame(frame.raw, frame.ts, out)
    elif direction == "rest":
        if frame.url is not None and feed.venue.parse_rest is not None:
            feed.on_rest(frame.url, frame.raw, frame.ts, out)
        else:
            _bad(feed, frame, "bad_rest",
                 "a rest line without a url, or for a venue without REST snapshots")
    elif direction == "event":
        _event(feed, frame, out)
    # "send": what the capture sent; there is nothing to apply.


def _event(feed: Feed, frame: CaptureFrame, out: List[Keyed]) -> None:
    try:
        msg = frame.msg if frame.is_json else None
    except FrameDecodeError:
        msg = None
    kind = msg.get("event") if isinstance(msg, dict) else None
    ts = frame.ts
    if kind == OPEN:
        out.extend(feed.disconnected(ts, UNCLOSED))
        feed.connected(ts)
    elif kind == CLOSE:
        reason = _text(msg, "reason")
        if reason is None:
            _bad(feed, frame, "bad_event", "close event without a reason")
            return
        out.extend(feed.disconnected(ts, reason))
    elif kind == RESYNC:
        product, reason, detail = (msg.get("product"), _text(msg, "reason"),
                                   _text(msg, "detail"))
        if valid_product(product) is None or reason is None or detail is None:
            _bad(feed, frame, "bad_event",
                 "resync event without a valid product, reason and detail")
            return
        feed.resync(product, ts, reason, detail, out)
    elif kind == OVERFLOW:
        dropped = msg.get("dropped")
        if type(dropped) is not int or dropped < 0:
            _bad(feed, frame, "bad_event", "overflow event without a frame count")
            return
        feed.overflow(ts, dropped, out)
    elif kind == REMOVE:
        products, reason = msg.get("products"), _text(msg, "reason")
        if not isinstance(products, list) or len(products) > MAX_PRODUCTS or reason is None \
                or any(valid_product(p) is None for p in products):
            _bad(feed, frame, "bad_event", "remove event without valid products and a reason")
            return
        feed.remove(products, ts, reason, out)
    else:
        _bad(feed, frame, "bad_event", "not an event this lobstream knows")


def _text(msg: Any, key: str) -> Optional[str]:
    value = msg.get(key)
    return safe_text(value, MAX_TEXT) if isinstance(value, str) else None


def _bad(feed: Feed, frame: CaptureFrame, kind: str, why: str) -> None:
    feed.counts[kind] += 1
    feed.bad.report(feed.venue.name, kind, why, frame.raw)

"""The capture's feeds: they decide what a live feed decides, and hand on what they got.

The capture runs the same websocket source as the analytics flow, with the same
reconnects, heartbeats, gap checks, resubscriptions and REST snapshots, because
its feeds are ordinary :class:`~sources.feed.feed.Feed` objects: a
:class:`TappedFeed` only differs in what it returns. Where a feed would append
book events for the dataflow, it appends ``(stream, line)``: the capture line
(:mod:`sources.capture.format`, without its newline) of what it was handed: the
frame (``recv``), the REST reply (``rest``, with its URL), the messages the
transport is about to send (``send``), and an ``event`` line for each call that
is not a frame (:mod:`sources.feed.captured`: connects, disconnects, overflows,
resyncs, removed products), so a replay of the lines decides what this feed
decided. The events it makes of them are dropped: the capture keeps
no books.

Line times: frames, REST replies, connects, disconnects and overflows carry the
time the socket thread stamped them with; lines made while the feed works (sends,
resync events) carry the latest of those on the stream, so a stream's times never
go backwards (the capture format promises that).

Fresh snapshots on request: the capture's resync requests come from analytics
flows (over the control topic: a book they found crossed, one they cannot
rebuild), and every :data:`snapshot_refresh <sources.kafka.settings.KafkaSettings>`
interval each synced product gets one too, so that Kafka retention always leaves
a recent frame to rebuild its book from (:mod:`sources.kafka.tracker`). On venues
with snapshots in the stream this is a resubscription, nothing more: the capture's
own checks all passed, the new snapshot re-bases the book, and no consumer of the
topic sees the book go invalid. On REST-snapshot venues it is a resync (a REST
snapshot can only be applied with the diffs buffered since it was asked for),
written as a ``resync`` event: the book is briefly invalid. First refreshes are
spread over the interval by a hash of the product name.
"""

from __future__ import annotations

import threading
import time
import zlib
from typing import Any, Dict, Iterable, List, Optional, Tuple

import orjson

from sources.capture.codec import encode_line
from sources.feed.captured import (close_event, open_event, overflow_event, remove_event,
                                   resync_event)
from sources.feed.feed import Feed
from sources.venues.base import Message, Raw

Line = Tuple[str, bytes]

REFRESH = "refresh"


class CaptureContext:
    """What the capture feeds of one process share with its control reader: the
    refresh interval, and when each product last had a fresh snapshot asked for
    (a control request older than that is already served)."""

    def __init__(self, refresh_ms: float) -> None:
        self.refresh_ms = refresh_ms
        self.started_ms = time.time() * 1000.0
        self._lock = threading.Lock()
        self._served: Dict[Tuple[str, str], float] = {}

    def served(self, venue: str, product: str) -> float:
        """Capture time of the last snapshot asked for ``venue:product`` (or of the
        capture's start: its connections began with fresh snapshots)."""
        with self._lock:
            return self._served.get((venue, product), self.started_ms)

    def asked(self, venue: str, product: str, ts: float) -> None:
        with self._lock:
            self._served[(venue, product)] = ts


class TappedFeed(Feed):
    """A capture connection's feed; see the module docstring. Built by the websocket
    source (``feed_factory``) with the same arguments as a :class:`Feed` plus the
    process's :class:`CaptureContext`."""

    def __init__(self, *args: Any, context: CaptureContext, **kwargs: Any) -> None:
        self._pending: List[Line] = []
        self._latest = 0.0
        self._context = context
        self._refresh_at: Dict[str, float] = {}
        super().__init__(*args, **kwargs)

    # -- what the transport hands over -------------------------------------------
    @property  # type: ignore[override]
    def outbox(self) -> List[Message]:
        return self._outbox

    @outbox.setter
    def outbox(self, messages: List[Message]) -> None:
        # The transport takes the outbox by replacing it: what it held is being sent.
        sent = getattr(self, "_outbox", None)
        if sent:
            self._pending.extend(self._send_lines(sent, self._latest))
        self._outbox = messages

    def on_frame(self, raw: Raw, ts: float, out: List[Any]) -> None:
        super().on_frame(raw, ts, [])
        self._emit(out, "recv", raw, stamp=ts)

    def on_rest(self, url: str, raw: Raw, ts: float, out: List[Any]) -> None:
        super().on_rest(url, raw, ts, [])
        self._emit(out, "rest", raw, url, stamp=ts)

    def connected(self, ts: float) -> List[Message]:
        messages = super().connected(ts)
        self._emit(self._pending, "event", open_event(list(self.books)), stamp=ts)
        self._pending.extend(self._send_lines(messages, self._latest))
        self._schedule(self.wanted, ts)
        return messages

    def add(self, products: Iterable[str], ts: float) -> List[Message]:
        messages = super().add(products, ts)
        self._schedule([p for p in self.wanted if p not in self._refresh_at], ts)
        return messages

    def remove(self, products: Iterable[str], ts: float, reason: str,
               out: List[Any]) -> List[Message]:
        gone = [p for p in products if p in self.books]
        if gone:
            self._emit(out, "event", remove_event(gone, reason))
        for product in gone:
            self._refresh_at.pop(product, None)
        return super().remove(gone, ts, reason, [])

    def disconnected(self, ts: float, reason: str) -> List[Any]:
        super().disconnected(ts, reason)
        out: List[Any] = []
        self._emit(out, "event", close_event(reason), stamp=ts)
        return out

    def overflow(self, ts: float, dropped: int, out: List[Any]) -> None:
        self._emit(out, "event", overflow_event(dropped), stamp=ts)
        super().overflow(ts, dropped, [])

    def resync(self, product: str, ts: float, reason: str, detail: str,
               out: List[Any]) -> None:
        """Get ``product`` a fresh snapshot (see the module docstring)."""
        if product not in self.books:
            return
        self._context.asked(self.venue.name, product, self._latest)
        if not self.rest:
            self.outbox.extend(self.protocol.resubscribe(product))
            return
        self._emit(out, "event", resync_event(product, reason, detail))
        super().resync(product, ts, reason, detail, [])

    def tick(self, now: float) -> None:
        super().tick(now)
        refresh = self._context.refresh_ms
        if not refresh:
            return
        for product, due in list(self._refresh_at.items()):
            if now < due:
                continue
            self._refresh_at[product] = now + refresh
            state = self.books.get(product)
            if state is None or state.refused is not None or not state.sync.synced:
                continue  # a snapshot is on its way already, or never will be
            lines: List[Any] = []
            self.resync(product, now, REFRESH, "periodic snapshot refresh", lines)
            self._pending.extend(lines)

    def _schedule(self, products: Iterable[str], ts: float) -> None:
        """First refreshes, spread over the interval so that the products of one
        capture are not all resubscribed at once."""
        refresh = self._context.refresh_ms
        for product in products:
            spread = zlib.crc32(f"{self.venue.name}:{product}".encode()) / 2**32
            self._refresh_at[product] = ts + refresh * (1.0 + spread)

    # -- lines ----------------------------------------------------------------------
    def _line(self, ts: float, direction: str, raw: Raw, url: Optional[str] = None) -> Line:
        """One capture line, redacted as the file recorder redacts: the raw topic
        is a capture too, and an authentication request or reply sent through it
        would hand the API secret or a token to every consumer of the topic."""
        return (self.stream, encode_line(ts, self.venue.name, self.stream,
                                         self.venue.redact(raw), direction, url)[:-1])

    def _send_lines(self, messages: List[Message], ts: float) -> List[Line]:
        return [self._line(ts, "send", orjson.dumps(m)) for m in messages]

    def _emit(self, out: List[Any], direction: str, raw: Raw, url: Optional[str] = None,
              stamp: Optional[float] = None) -> None:
        """Lines waiting to go out first (unless ``out`` is where they wait), then
        this one, at the socket thread's ``stamp`` or the stream's latest time."""
        if stamp is not None and stamp > self._latest:
            self._latest = stamp
        if self._pending and out is not self._pending:
            out.extend(self._pending)
            self._pending = []
        out.append(self._line(self._latest, direction, raw, url))

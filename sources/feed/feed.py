"""One connection's inbound logic: parse, check sequences, decide what to resync.

A :class:`Feed` sits between a transport (websocket, file replay) and the dataflow.
It takes decoded frames and produces keyed items for the book step, either
:class:`~state.events.BookEvent` to apply or :class:`~state.events.BookStatus`
when a book must not be trusted any more. Messages the connection should send
(answers to heartbeat test requests, resubscriptions after a gap) collect in
:attr:`Feed.outbox`; a live transport sends them, a replay has no one to send them
to and drops them.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple, Union

from sources.venues.frames import (BOOK, ERROR, REPLY, TEST_REQUEST, BadInput, FrameError, decode)
from sources.venues import Message, Venue
from state.events import SNAPSHOT, BookEvent, BookStatus, book_key
from state.sync import DUPLICATE, OK, UNSYNCED, BookSync, ConnectionSequence

log = logging.getLogger("lobstream.feed")

Item = Union[BookEvent, BookStatus]
Keyed = Tuple[str, Item]

INVALID = "invalid"

#: Every live Feed in this process, for the metrics exporter and the status log.
FEEDS: "weakref.WeakSet[Feed]" = weakref.WeakSet()

#: What to tell the operator when the exchange refuses a subscription.
_HINTS = (
    ("13778", "raw books need authentication; use the 100ms interval (deribit.interval = \"100ms\")"),
    ("raw_subscriptions_not_available", "raw books need authentication; use the 100ms interval"),
    ("channels now require authentication", "level2 needs credentials, which lobstream does not "
     "use; use level2_batch (coinbase_exchange.channel = \"level2_batch\")"),
    ("authentication", "this channel needs credentials; use a public channel or configure keys"),
    ("auth", "this channel needs credentials; use a public channel or configure keys"),
    ("Invalid params", "check the product names in the configuration"),
    ("not a valid product", "check the product names in the configuration"),
)
#: The hint for a refused product when no specific one applies: the operator must
#: know that lobstream gave up on it and what to look at.
_DEFAULT_HINT = ("lobstream does not retry a refused subscription; check the product "
                 "names and the channel settings in the configuration, then restart")


class Feed:
    """Sequence-checked decoding of one connection.

    ``products`` are the products subscribed on the connection; None accepts any
    product that appears (file replay, where the recording decides).
    """

    def __init__(self, venue: Venue, products: Optional[Iterable[str]], bad: BadInput,
                 stream: str = "") -> None:
        self.venue = venue
        self.stream = stream or venue.name
        self.fixed = products is not None
        self.books: Dict[str, BookSync] = {p: BookSync() for p in (products or ())}
        self.conn_seq = ConnectionSequence()
        self.bad = bad
        self.counts: Counter = Counter()
        self.outbox: List[Message] = []
        self.refused: Dict[str, str] = {}
        #: Products (re)subscribed on this connection that have had no snapshot since.
        self.awaiting: Set[str] = set()
        #: Products whose subscribe the exchange confirmed before any snapshot came:
        #: their next book message must be the snapshot (JSON-RPC venues answer first).
        self._snapshot_next: Set[str] = set()
        self._requests: Dict[Any, List[str]] = {}
        self._subscribes: Set[Any] = set()
        FEEDS.add(self)

    # -- connection lifecycle ---------------------------------------------------
    def connected(self) -> List[Message]:
        """A new connection: counters restart, and every book waits for a snapshot."""
        self.conn_seq.reset()
        for sync in self.books.values():
            sync.invalidate()
        self.counts["connects"] += 1
        wanted = [p for p in self.books if p not in self.refused]
        self.awaiting = set(wanted)
        self._snapshot_next.clear()
        self._subscribes.clear()  # requests of a lost connection get no answer
        return self._track(self.venue.subscribe(wanted)) if wanted else []

    def disconnected(self, ts: float, reason: str) -> List[Keyed]:
        """The connection is gone: every book on it is stale until resubscribed."""
        out: List[Keyed] = []
        for product, sync in self.books.items():
            if sync.synced:
                sync.invalidate()
                out.append(self._status(product, ts, "disconnected", reason))
        return out

    # -- inbound ---------------------------------------------------------------
    def on_message(self, msg: Any, ts: float, out: List[Keyed]) -> None:
        """Handle one decoded frame, appending what the dataflow should see to ``out``."""
        self.counts["frames"] += 1
        try:
            parsed = self.venue.parse(msg, ts)
        except FrameError as ex:
            self._reject(ex, msg, ts, out)
            return
        if parsed.seq is not None and not self._connection_seq(parsed.seq, ts, out):
            return
        kind = parsed.kind
        if kind == BOOK:
            for ev in parsed.events:
                self._book_event(ev, out)
        elif kind == TEST_REQUEST:
            if self.venue.answer_test_request is not None:
                self.outbox.extend(self._track([self.venue.answer_test_request()]))
        elif kind == ERROR:
            self._refused(parsed.ref, parsed.detail, ts, out)
        elif kind == REPLY:
            products = self._requests.pop(parsed.ref, [])
            if parsed.ref in self._subscribes:
                self._subscribes.discard(parsed.ref)
                self._snapshot_next.update(p for p in products
                                           if p in self.books and not self.books[p].synced)

    def on_raw(self, raw: Union[bytes, str], ts: float, out: List[Keyed]) -> None:
        """Like :meth:`on_message` for an undecoded frame."""
        try:
            msg = decode(raw)
        except FrameError as ex:
            self.counts["frames"] += 1
            self._reject(ex, raw, ts, out)
            return
        self.on_message(msg, ts, out)

    def _book_event(self, ev: BookEvent, out: List[Keyed]) -> None:
        sync = self.books.get(ev.product)
        if sync is None:
            if self.fixed:
                self.counts["unexpected_product"] += 1
                return
            sync = self.books[ev.product] = BookSync()
        verdict = sync.check(ev)
        if verdict == OK:
            out.append((book_key(ev.venue, ev.product), ev))
            if ev.kind == SNAPSHOT:
                self.counts["snapshots"] += 1
                self.awaiting.discard(ev.product)
                self._snapshot_next.discard(ev.product)
            else:
                self.counts["updates"] += 1
        elif verdict == DUPLICATE:
            self.counts["duplicates"] += 1
        elif verdict == UNSYNCED:
            self.counts["dropped_unsynced"] += 1
            if ev.product in self._snapshot_next:
                # Subscribed, yet an update came first: the snapshot was lost, and
                # without this the book would wait for it forever.
                self._snapshot_next.discard(ev.product)
                self._gap(ev.product, ev.ts_recv, "gap",
                          f"change {ev.seq} arrived where the snapshot should have", out)
        else:
            self._gap(ev.product, ev.ts_recv, "gap",
                      f"prev_change_id {ev.prev_seq} does not follow {sync.last}", out)

    def _connection_seq(self, seq: int, ts: float, out: List[Keyed]) -> bool:
        """Check the connection counter; False means drop the frame (a duplicate)."""
        last = self.conn_seq.last
        verdict = self.conn_seq.check(seq)
        if verdict == OK:
            return True
        if verdict == DUPLICATE:
            self.counts["duplicates"] += 1
            return False
        detail = f"sequence_num jumped from {last} to {seq}"
        for product in list(self.books):
            self._gap(product, ts, "gap", detail, out)
        return True

    def _gap(self, product: str, ts: float, reason: str, detail: str, out: List[Keyed]) -> None:
        """Invalidate one book, tell the dataflow, and ask the exchange for a new snapshot."""
        sync = self.books[product]
        sync.invalidate()
        self.counts["gaps"] += 1
        out.append(self._status(product, ts, reason, detail))
        if product not in self.refused:
            self.counts["resyncs"] += 1
            self.outbox.extend(self._track(self.venue.resubscribe(product)))
            self.awaiting.add(product)
            # Updates the server sent before it saw this resubscription are still on
            # the way; only the new subscription's confirmation says the snapshot is next.
            self._snapshot_next.discard(product)

    def resync(self, product: str, ts: float, reason: str, detail: str, out: List[Keyed]) -> None:
        """Resynchronise ``product`` on request (the book step found it crossed)."""
        if product in self.books:
            self._gap(product, ts, reason, detail, out)

    def _reject(self, ex: FrameError, sample: Any, ts: float, out: List[Keyed]) -> None:
        self.counts[f"bad_{ex.kind}"] += 1
        self.bad.report(self.venue.name, ex.kind, str(ex), sample)
        if ex.seq is not None and not self._connection_seq(ex.seq, ts, out):
            return
        for product in ex.products:
            # A book waiting for the snapshot its (re)subscription brings is resynced
            # too: the broken frame may be that snapshot, and no other would come.
            if product in self.books and (self.books[product].synced or product in self.awaiting):
                self._gap(product, ts, "bad_input", f"{ex.kind}: {ex}", out)

    def _refused(self, ref: Any, detail: str, ts: float, out: List[Keyed]) -> None:
        """An error reply: the products it concerns stay down until restart.

        Retrying a refused subscription cannot succeed without a configuration
        change, and retrying in a loop is how clients get rate-limited or banned.
        An error that names no request (Coinbase) concerns the whole connection;
        one for a request that named no product (a heartbeat setting, a test
        answer) or that this connection never sent only gets logged.
        """
        products = list(self.books) if ref is None else self._requests.pop(ref, [])
        self._subscribes.discard(ref)
        hint = next((h for needle, h in _HINTS if needle in detail),
                    _DEFAULT_HINT if products else "")
        self.counts["errors"] += 1
        log.error("%s refused %s: %s%s", self.venue.name, ", ".join(products) or "a request",
                  detail, f" -> {hint}" if hint else "")
        for product in products:
            if product in self.books and product not in self.refused:
                self.refused[product] = detail
                self.books[product].invalidate()
                out.append(self._status(product, ts, "refused", detail))

    def _track(self, messages: List[Message]) -> List[Message]:
        """Remember which products each request is about, to attribute error replies."""
        for m in messages:
            if "id" in m:
                channels = (m.get("params") or {}).get("channels") or []
                self._requests[m["id"]] = [c.split(".")[1] for c in channels if c.count(".") >= 2]
                if str(m.get("method", "")).endswith("/subscribe"):
                    self._subscribes.add(m["id"])
        return messages

    def _status(self, product: str, ts: float, reason: str, detail: str) -> Keyed:
        return (book_key(self.venue.name, product),
                BookStatus(self.venue.name, product, ts, INVALID, reason, detail))

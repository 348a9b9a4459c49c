"""One connection's inbound logic: parse, check sequences, decide what to resync.

A :class:`Feed` sits between a transport (websocket, file replay, Kafka) and the
dataflow. It takes raw frames and produces keyed items for the book step, either
:class:`~state.events.BookEvent` to apply or :class:`~state.events.BookStatus`
when a book must not be trusted any more. Messages the connection should send
(subscriptions, answers to test requests, resubscriptions after a gap) collect in
:attr:`Feed.outbox`; a live transport sends them, a replay has no one to send
them to and drops them. It holds no I/O.

A connection carries a group of products. Where the venue numbers frames per
connection (Coinbase Advanced Trade), a gap concerns every product on it; where
books are chained per product (Deribit, Binance) a gap resubscribes that product
alone while the others keep streaming.

Books come back in one of two ways. Most venues send a snapshot in the stream
when a product is (re)subscribed. Binance does not: the feed buffers the
product's diffs (bounded), asks for a REST snapshot (:attr:`Feed.requests`, which
the transport fetches and hands back through :meth:`Feed.on_rest`), and applies
the snapshot followed by the buffered diffs that chain onto it, all or nothing:
if the diffs do not connect (the snapshot is older than the first buffered diff),
nothing is emitted and a newer snapshot is fetched, the diffs staying buffered.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from sources.feed.reporting import BadInput, ErrorReplies
from sources.venues.base import (BOOK, ERROR, RECONNECT, REPLY, TEST_REQUEST, TICKER, TRADES,
                                 FrameError, Message, Raw, Venue, valid_product)
from state.bars import LeapGuard
from state.events import REFRESH, SNAPSHOT, BookEvent, BookStatus, Clock, Ticker, Trade
from state.sync import (BOGUS, DUPLICATE, GAP, LATE, OK, STALE, STUCK, STUCK_AFTER, UNSYNCED,
                        BookSync, ConnectionSequence)

log = logging.getLogger("lobstream.feed")

Item = Union[BookEvent, BookStatus, Trade, Ticker, Clock]
Keyed = Tuple[str, Item]

INVALID = "invalid"

#: The hint for a refused product when the venue has no specific one: the operator
#: must know that lobstream gave up on it and what to look at.
DEFAULT_HINT = ("lobstream does not retry a refused subscription; check the product "
                "names and the channel settings in the configuration, then restart")

#: A product waiting this long for the snapshot its (re)subscription should bring
#: is resubscribed again (then after twice as long, up to SNAPSHOT_RETRY_CAP): a
#: lost snapshot must not leave a book waiting forever, and a slow one must not
#: cause a storm of 5 MB snapshots.
SNAPSHOT_TIMEOUT_MS = 15_000.0
SNAPSHOT_RETRY_CAP_MS = 240_000.0
#: A failed snapshot request is asked for again after this long, doubling with each
#: failure in a row up to the snapshot timeout: soon after a 429 or a ban (the REST
#: client refuses locally until a ban's Retry-After has passed, so a retry during
#: one sends nothing), never a request per diff, never a loop against a venue that
#: keeps failing.
FAILED_RETRY_MS = 1000.0
#: Diffs buffered per product while its REST snapshot is on the way (100 ms diffs:
#: over 8 minutes). Beyond it the oldest are dropped and counted: the snapshot that
#: finally comes is then checked against the oldest diff kept.
MAX_BUFFERED = 5000


#: What :meth:`Feed._known` returns for a product name no product can have.
_GARBLED = object()


def default_key(venue: str) -> Callable[[str], str]:
    """Routing keys ``venue:product`` (one worker, or placement not needed)."""
    return lambda product: f"{venue}:{product}"


class _Product:
    """One product's state on a connection."""

    __slots__ = ("key", "sync", "retry_at", "retry_ms", "snapshot_next", "refused",
                 "buffer", "fetching", "failed")

    def __init__(self, key: str, sync: BookSync) -> None:
        self.key = key
        self.sync = sync
        #: While a snapshot is awaited, the receive time (ms) at which it is asked for
        #: again; None when synced or idle.
        self.retry_at: Optional[float] = None
        #: How long the next wait for a snapshot lasts before it is asked for again.
        self.retry_ms = SNAPSHOT_TIMEOUT_MS
        #: The exchange confirmed a subscription, so its next book message must be
        #: the snapshot (JSON-RPC venues answer before they send data).
        self.snapshot_next = False
        self.refused: Optional[str] = None
        #: REST-snapshot venues: diffs received since the book was lost, in order
        #: (None while the book is synced).
        self.buffer: Optional[Deque[BookEvent]] = None
        #: A snapshot request for this product is on its way.
        self.fetching = False
        #: Snapshot requests failed in a row (reset by a snapshot applied).
        self.failed = 0


class Feed:
    """Sequence-checked decoding of one connection.

    ``products`` are the products subscribed on the connection; None accepts any
    product that appears (file replay, where the recording decides). ``key`` maps
    a product to its Bytewax routing key (placement decides it).
    """

    def __init__(self, venue: Venue, products: Optional[Iterable[str]], bad: BadInput,
                 stream: str = "", *, settings: Optional[Mapping[str, Any]] = None,
                 key: Optional[Callable[[str], str]] = None,
                 errors: Optional[ErrorReplies] = None, clock_ms: float = 0.0) -> None:
        self.venue = venue
        self.stream = stream or venue.name
        self.protocol = venue.protocol(settings or {})
        self.fixed = products is not None
        self._key = key or default_key(venue.name)
        self.books: Dict[str, _Product] = {}
        self.conn_seq = ConnectionSequence() if venue.connection_sequence else None
        self.bad = bad
        self.errors = errors or ErrorReplies()
        self.counts: Counter = Counter()
        self.outbox: List[Message] = []
        #: Products whose REST snapshot the transport should fetch now.
        self.requests: List[str] = []
        self.rest = venue.rest_snapshots
        #: The server announced a shutdown: the transport should reconnect now.
        self.reconnect = False
        #: Every product on the connection hears the connection's exchange time
        #: (a :class:`~state.events.Clock`) each time it moves by ``clock_ms``, so
        #: its bars close even while it is quiet; 0 turns that off.
        self.clock_ms = clock_ms
        #: The exchange time of the last Clock sent; a replay that resumes mid-stream
        #: restores it so its clocks tick on the same frames as the uninterrupted run.
        self.clock_at = float("-inf")
        self._leaps = LeapGuard()  # one forged time must not stop the clocks
        #: Why the connection is down (None while it is up, or before its first
        #: attempt), and how many attempts in a row failed: the status line shows
        #: a connection that keeps failing, which no per-connect counter does.
        self.outage: Optional[str] = None
        self.failures = 0
        for product in products or ():
            self._product(product)

    def _product(self, product: str) -> _Product:
        state = self.books[product] = _Product(self._key(product), BookSync(self.venue.book_chain))
        if self.rest:
            state.buffer = deque()  # diffs wait for the product's first snapshot
        return state

    @property
    def refused(self) -> Dict[str, str]:
        """Products the exchange refused, with its reason."""
        return {p: s.refused for p, s in self.books.items() if s.refused is not None}

    @property
    def wanted(self) -> List[str]:
        """Products this connection should carry (not refused)."""
        return [p for p, s in self.books.items() if s.refused is None]

    # -- connection lifecycle ---------------------------------------------------
    def connected(self, ts: float) -> List[Message]:
        """A new connection: counters restart, and every book waits for a snapshot."""
        if self.conn_seq is not None:
            self.conn_seq.reset()
        self.protocol.reset()
        self.counts["connects"] += 1
        self.outage, self.failures = None, 0
        wanted = self.wanted
        for product in wanted:
            state = self.books[product]
            state.sync.invalidate()
            state.snapshot_next = False
            self._await(state, ts, reset=True)
            if self.rest:
                # The snapshot is fetched once the first diff is in, unless a request
                # is still in flight: its reply (the transport always gives one, or
                # a failure) serves this connection's diffs as well as any.
                state.buffer = deque()
        return self.protocol.open(wanted) if wanted else []

    def disconnected(self, ts: float, reason: str) -> List[Keyed]:
        """The connection is gone (or could not be opened): every book on it is
        stale until resubscribed."""
        self.counts["disconnects"] += 1
        self.outage = reason
        self.failures += 1
        out: List[Keyed] = []
        for product, state in self.books.items():
            state.retry_at = None
            if state.sync.synced:
                state.sync.invalidate()
                out.append(self._status(product, ts, "disconnected", reason))
        return out

    def overflow(self, ts: float, dropped: int, out: List[Keyed]) -> None:
        """The transport dropped ``dropped`` frames of this connection because the
        dataflow fell behind: every book on it missed updates and resyncs."""
        self.counts["overflows"] += 1
        self.counts["dropped_overflow"] += dropped
        if self.conn_seq is not None:
            self.conn_seq.reset()  # the dropped frames are a known gap, not a new one
        detail = f"{dropped} frames dropped: the dataflow fell behind the feed"
        for product in list(self.books):
            self._gap(product, ts, "overflow", detail, out, force=True)

    def add(self, products: Iterable[str], ts: float) -> List[Message]:
        """Start following ``products`` on the running connection."""
        new = [p for p in products if p not in self.books]
        for product in new:
            self._await(self._product(product), ts, reset=True)
        return self.protocol.subscribe(new)

    def remove(self, products: Iterable[str], ts: float, reason: str,
               out: List[Keyed]) -> List[Message]:
        """Stop following ``products`` (delisted, expired): one status each."""
        gone = [p for p in products if p in self.books]
        for product in gone:
            del self.books[product]
            out.append(self._status(product, ts, reason, "no longer listed by the exchange"))
        return self.protocol.unsubscribe(gone)

    def tick(self, now: float) -> None:
        """Send what the protocol has due (a token refresh), and ask again for
        snapshots that are overdue (see :data:`SNAPSHOT_TIMEOUT_MS`)."""
        self.outbox.extend(self.protocol.due(now))
        for product, state in self.books.items():
            due = state.retry_at
            if due is not None and now >= due and state.refused is None \
                    and not state.fetching:
                self.counts["snapshot_retries"] += 1
                state.retry_ms = min(state.retry_ms * 2.0, SNAPSHOT_RETRY_CAP_MS)
                state.retry_at = now + state.retry_ms
                self._ask_snapshot(product, state)

    def _ask_snapshot(self, product: str, state: _Product) -> None:
        """Make the exchange send ``product``'s book again: a resubscription, or
        for REST-snapshot venues a snapshot request (its diffs buffered meanwhile)."""
        if not self.rest:
            self.outbox.extend(self.protocol.resubscribe(product))
            return
        if state.buffer is None:
            state.buffer = deque()
        if not state.fetching:
            state.fetching = True
            self.requests.append(product)

    # -- REST snapshots ----------------------------------------------------------
    def on_rest(self, url: str, raw: Raw, ts: float, out: List[Keyed]) -> None:
        """A REST snapshot reply (live, or recorded in a capture)."""
        self.counts["rest_replies"] += 1
        assert self.venue.parse_rest is not None
        try:
            parsed = self.venue.parse_rest(url, raw, ts)
        except FrameError as ex:
            # A reply that is no depth snapshot is a failed request: bad input, and
            # asked for again on the timer. (Resyncing the book it names would ask
            # again at once, as fast as the server can answer.)
            self._count_bad(ex, raw)
            for product in ex.products or ():
                if product in self.books:
                    self.books[product].fetching = False
            return
        for snapshot in parsed.events:
            state = self.books.get(snapshot.product)
            if state is None:
                # A reply for a product no longer followed (removed while in flight).
                continue
            state.fetching = False
            if state.buffer is None:
                # The book is not waiting for a snapshot (another reply synced it):
                # this one could only put an older book in place of the current one.
                self.counts["rest_unneeded"] += 1
                continue
            self._apply_snapshot(state, snapshot, out)

    def rest_failed(self, product: str, ts: float) -> None:
        """A snapshot request gave up (the REST client logged why): it is asked
        for again after :data:`FAILED_RETRY_MS`, doubling with each failure."""
        state = self.books.get(product)
        if state is not None:
            state.fetching = False
            self.counts["rest_failures"] += 1
            if state.retry_at is not None:
                state.retry_at = ts + min(FAILED_RETRY_MS * 2.0 ** state.failed, state.retry_ms)
            state.failed += 1

    def _apply_snapshot(self, state: _Product, snapshot: BookEvent, out: List[Keyed]) -> None:
        """The snapshot and the buffered diffs that chain onto it, all or nothing."""
        sync = state.sync
        sync.check(snapshot)
        buffered = list(state.buffer or ())
        applied = [snapshot]
        for i, ev in enumerate(buffered):
            verdict = sync.check(ev)
            if verdict is OK:
                applied.append(ev)
            elif verdict is STALE or verdict is DUPLICATE:
                self.counts["dropped_stale"] += 1
            else:
                # The snapshot is older than the diffs (or the diffs have a hole):
                # emit nothing, keep the diffs, fetch a newer snapshot.
                self.counts["stale_snapshots"] += 1
                sync.invalidate()
                state.buffer = deque(buffered[i:])
                self._ask_snapshot(snapshot.product, state)
                return
        state.buffer = None
        state.retry_at = None
        state.retry_ms = SNAPSHOT_TIMEOUT_MS
        state.failed = 0
        self.counts["snapshots"] += 1
        self.counts["updates"] += len(applied) - 1
        out.extend((state.key, ev) for ev in applied)

    def _buffer(self, state: _Product, ev: BookEvent) -> None:
        buffer = state.buffer
        if buffer is None:
            return
        if len(buffer) >= MAX_BUFFERED:
            buffer.popleft()
            self.counts["dropped_buffer"] += 1
        buffer.append(ev)
        if len(buffer) == 1 and not state.fetching and state.retry_at is not None:
            # The first diff since the book was lost: a snapshot fetched now is not
            # older than every diff. Later diffs never ask: a request that failed
            # is retried on the timer (:meth:`tick`), not at the next diff.
            self._ask_snapshot(ev.product, state)

    # -- inbound ---------------------------------------------------------------
    def on_frame(self, raw: Raw, ts: float, out: List[Keyed]) -> None:
        """Handle one raw frame, appending what the dataflow should see to ``out``."""
        self.counts["frames"] += 1
        try:
            parsed = self.venue.parse(raw, ts)
        except FrameError as ex:
            self._reject(ex, raw, ts, out)
            return
        if parsed.seq is not None and self.conn_seq is not None \
                and not self._connection_seq(parsed.seq, parsed.events, ts, out):
            return
        kind = parsed.kind
        if kind == BOOK:
            garbled = None
            for ev in parsed.events:
                if not self._book_event(ev, out):
                    garbled = ev
            if garbled is not None:
                # Counted once per frame, like every other bad input. The update was
                # some product's, and which one is unknown.
                self._garbled(garbled.product)
                self._unattributed(garbled.seq is not None, ts, "bad_product: product name "
                                   "is not valid", out)
        elif kind == TRADES or kind == TICKER:
            counts = self.counts
            garbled = None
            for ev in parsed.events:
                state = self._known(ev.product)
                if state is _GARBLED:
                    garbled = ev
                elif state is not None:
                    counts[kind] += 1
                    out.append((state.key, ev))
            if garbled is not None:
                self._garbled(garbled.product)
        elif kind == TEST_REQUEST:
            self.outbox.extend(self.protocol.answer_test_request())
        elif kind == ERROR:
            self._error(parsed.ref, parsed.code, parsed.detail, ts, out)
        elif kind == RECONNECT:
            self.counts["server_shutdowns"] += 1
            self.reconnect = True
        elif kind == REPLY:
            reply = self.protocol.reply(parsed.ref, parsed.events)
            if parsed.events:
                self.counts["auth_grants"] += 1
            self.outbox.extend(reply.send)
            if reply.confirms_subscribe:
                for product in reply.products:
                    state = self.books.get(product)
                    if state is not None and not state.sync.synced:
                        state.snapshot_next = True
        if self.clock_ms:
            ts = parsed.ts
            if ts is None and parsed.events and kind != REPLY:  # a reply's are a grant
                ts = parsed.events[-1].ts_exchange
            if ts is not None and ts >= self.clock_at + self.clock_ms \
                    and self._leaps.allows(self.clock_at, ts):
                self.clock_at = ts
                venue = self.venue.name
                out.extend((s.key, Clock(venue, p, ts)) for p, s in self.books.items())

    def _known(self, product: str) -> Any:
        """The product's state, created on first sight when the recording decides
        which products there are; None (counted) for a product not subscribed;
        :data:`_GARBLED` for a name no product can have (the caller counts it once
        per frame)."""
        state = self.books.get(product)
        if state is not None:
            return state
        if valid_product(product) is None:
            return _GARBLED
        if self.fixed:
            self.counts["unexpected_product"] += 1
            return None
        return self._product(product)

    def _garbled(self, name: str) -> None:
        self.counts["bad_product"] += 1
        self.bad.report(self.venue.name, "bad_product", "product name is not valid", name)

    def _book_event(self, ev: BookEvent, out: List[Keyed]) -> bool:
        """Check and pass on one event; False if its product name is garbled."""
        state = self._known(ev.product)
        if state is _GARBLED:
            return False
        if state is None:
            return True
        sync = state.sync
        last = sync.last
        verdict = sync.check(ev)
        if verdict is OK:
            out.append((state.key, ev))
            if ev.kind is SNAPSHOT or ev.kind is REFRESH:
                self.counts["snapshots"] += 1
                state.retry_at = None
                state.retry_ms = SNAPSHOT_TIMEOUT_MS
                state.snapshot_next = False
            else:
                self.counts["updates"] += 1
        elif verdict is DUPLICATE:
            self.counts["duplicates"] += 1
        elif verdict is STALE:
            self.counts["dropped_stale"] += 1
        elif verdict is UNSYNCED:
            if self.rest:
                self._buffer(state, ev)
                return True
            self.counts["dropped_unsynced"] += 1
            if state.snapshot_next:
                # Subscribed, yet an update came first: the snapshot was lost, and
                # without this the book would wait for it until the retry timeout
                # (forced: the snapshot it is waiting for is the one lost).
                state.snapshot_next = False
                self._gap(ev.product, ev.ts_recv, "gap",
                          f"change {ev.seq} arrived where the snapshot should have", out,
                          force=True)
        elif verdict is GAP:
            self._gap(ev.product, ev.ts_recv, "gap",
                      f"update {ev.prev_seq}->{ev.seq} does not follow {last}", out)
            self._buffer(state, ev)  # the first diff after the hole is still needed
        elif verdict is BOGUS:
            self.counts["bad_seq"] += 1
            self._gap(ev.product, ev.ts_recv, "bad_input",
                      f"implausible sequence {ev.prev_seq}->{ev.seq} after {last}", out)
        else:  # STUCK
            self._gap(ev.product, ev.ts_recv, "gap",
                      f"{STUCK_AFTER} consecutive updates at or below {last}", out)
        return True

    def _connection_seq(self, seq: int, events: List[Any], ts: float,
                        out: List[Keyed]) -> bool:
        """Check the connection counter; False means drop the frame."""
        conn_seq = self.conn_seq
        assert conn_seq is not None
        last = conn_seq.last
        verdict = conn_seq.check(seq)
        if verdict is OK:
            return True
        if verdict is LATE:
            self.counts["late"] += 1
            for product, state in list(self.books.items()):
                if state.sync.synced:
                    self._gap(product, ts, "gap", f"sequence_num {seq} arrived after the "
                              f"jump to {last} that skipped it", out)
            return False
        if verdict is DUPLICATE:
            if self._brings_awaited_snapshot(events):
                # A fresh snapshot re-bases the counter: a corrupt number seen
                # earlier must not make everything after it a "duplicate". The
                # frames dropped as duplicates meanwhile were real, so a book
                # synced since (by the snapshot in the frame with that number)
                # missed their updates.
                dropped = conn_seq.rebase(seq)
                self.counts["rebased"] += 1
                if dropped:
                    for product, state in list(self.books.items()):
                        if state.sync.synced:
                            self._gap(product, ts, "gap", f"sequence_num re-based to {seq}: "
                                      f"{dropped} frames were taken for duplicates", out)
                return True
            self.counts["duplicates"] += 1
            return False
        if verdict is GAP:
            detail = f"sequence_num jumped from {last} to {seq}"
            keep = True
        elif verdict is BOGUS:
            self.counts["bad_seq"] += 1
            detail = f"implausible sequence_num {seq} after {last}"
            keep = False
        else:  # STUCK
            detail = f"{STUCK_AFTER} consecutive frames at or below sequence_num {last}"
            keep = False
        for product in list(self.books):
            # The lost frames may include a snapshot a product was waiting for.
            self._gap(product, ts, "gap", detail, out, force=True)
        return keep

    def _brings_awaited_snapshot(self, events: List[Any]) -> bool:
        for ev in events:
            if type(ev) is not BookEvent or ev.kind is not SNAPSHOT:
                continue
            state = self.books.get(ev.product)
            if state is not None and state.retry_at is not None:
                return True
        return False

    def _await(self, state: _Product, ts: float, reset: bool = False) -> None:
        if reset:
            state.retry_ms = SNAPSHOT_TIMEOUT_MS
        if reset or state.retry_at is None:
            state.retry_at = ts + state.retry_ms

    def _gap(self, product: str, ts: float, reason: str, detail: str, out: List[Keyed],
             force: bool = False) -> None:
        """Invalidate one book, tell the dataflow, and ask the exchange for a new snapshot.

        A product already waiting for the snapshot of an earlier resync is not
        resubscribed again (that snapshot is on its way; :meth:`tick` retries if it
        never comes), unless ``force``: the frames lost may have been that snapshot."""
        state = self.books[product]
        if force:
            state.retry_at = None
        state.sync.invalidate()
        self.counts["gaps" if reason == "gap" else f"invalid_{reason}"] += 1
        out.append(self._status(product, ts, reason, detail))
        if state.refused is not None or state.retry_at is not None:
            return
        self.counts["resyncs"] += 1
        self._await(state, ts)
        self._ask_snapshot(product, state)
        # Updates the server sent before it saw this resubscription are still on
        # the way; only the new subscription's confirmation says the snapshot is next.
        state.snapshot_next = False

    def resync(self, product: str, ts: float, reason: str, detail: str,
               out: List[Keyed]) -> None:
        """Resynchronise ``product`` on request (the book step found it crossed)."""
        if product in self.books:
            self._gap(product, ts, reason, detail, out)

    def _count_bad(self, ex: FrameError, raw: Raw) -> None:
        self.counts[f"bad_{ex.kind}"] += 1
        self.bad.report(self.venue.name, ex.kind, str(ex), self.venue.redact(raw))

    def _reject(self, ex: FrameError, raw: Raw, ts: float, out: List[Keyed]) -> None:
        self._count_bad(ex, raw)
        if ex.seq is not None and self.conn_seq is not None \
                and not self._connection_seq(ex.seq, [], ts, out):
            return
        detail = f"{ex.kind}: {ex}"
        if ex.products is None:
            self._unattributed(ex.seq is not None, ts, detail, out)
            return
        for product in ex.products:
            self._lost(product, ts, detail, out)

    def _lost(self, product: str, ts: float, detail: str, out: List[Keyed],
              force: bool = True) -> None:
        """A broken frame was about ``product``: resync it. A book waiting for the
        snapshot its (re)subscription brings is resubscribed too (``force``): the
        broken frame may be that snapshot, and no other would come."""
        state = self.books.get(product)
        if state is not None and (state.sync.synced or state.retry_at is not None):
            self._gap(product, ts, "bad_input", detail, out, force=force)

    def _unattributed(self, numbered: bool, ts: float, detail: str, out: List[Keyed]) -> None:
        """A broken frame may have been any book's update. Where the books are
        chained, the next update of the one it was reveals the gap; where a
        connection counter numbered it (``numbered``), no gap will show, and where
        nothing numbers book messages (Coinbase Exchange) none ever would: then
        every book on the connection is resynced. Books already waiting for a
        snapshot keep waiting (:meth:`tick` retries): resubscribing all of them on
        every such frame multiplied into a request storm under the fuzz."""
        if self.venue.book_chain is not None or (self.conn_seq is not None and not numbered):
            return
        for product in list(self.books):
            self._lost(product, ts, detail, out, force=False)

    def _error(self, ref: Any, code: str, detail: str, ts: float, out: List[Keyed]) -> None:
        """An error reply: the products it concerns stay down until restart.

        Retrying a refused subscription cannot succeed without a configuration
        change, and retrying in a loop is how clients get rate-limited or banned.
        An error that cannot be pinned on a subscription (no request id, an id
        this connection never sent, a request that named no product) is only
        logged: it must never take down products it is not about."""
        products = [p for p in self.protocol.refused(ref, detail) or () if p in self.books]
        self.counts["errors"] += 1
        hint = self.venue.hint(detail) or (DEFAULT_HINT if products else "")
        self.errors.report(self.venue.name, code or detail[:60],
                           ", ".join(products) or "a request", detail, hint)
        for product in products:
            state = self.books[product]
            if state.refused is None:
                state.refused = detail
                state.retry_at = None
                state.sync.invalidate()
                out.append(self._status(product, ts, "refused", detail))

    def _status(self, product: str, ts: float, reason: str, detail: str) -> Keyed:
        return (self.books[product].key if product in self.books else self._key(product),
                BookStatus(self.venue.name, product, ts, INVALID, reason, detail))

"""Live exchange input: one websocket per product, read without blocking Bytewax.

Each partition (``venue:product``) owns one connection, so a connection-level gap
(Coinbase ``sequence_num``) pins exactly one book, and Bytewax spreads products
over workers and processes. The socket is read by an asyncio client in a daemon
thread that only timestamps frames and queues them; ``next_batch`` drains the
queue and never waits. (Bytewax's ``batch_async`` helper instead blocks the worker
for its whole timeout and only services the socket while it runs.)
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Union

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, WebSocketException

from sources.runtime import control, shutdown
from sources.transport.backoff import Backoff
from sources.capture.format import CaptureWriter
from sources.feed.feed import Feed, Keyed
from sources.venues.frames import BadInput
from sources.venues import Message, Venue
from state.events import book_key

log = logging.getLogger("lobstream.websocket")

#: Advanced Trade snapshots of deep books are single frames of several MB.
MAX_FRAME_BYTES = 64 * 1024 * 1024

_FRAME, _CONNECTED, _DISCONNECTED, _EOF = range(4)


class WebsocketSource(FixedPartitionedSource[Keyed, Dict[str, int]]):
    """Order-book events for ``products`` of ``venue``, one partition per product.

    ``exit_on_close``: end the partition when the server closes the connection
    normally (code 1000) instead of reconnecting. Live exchanges never do that on
    purpose; the local simulator does at the end of a recording, which is how an
    offline run finishes by itself. ``record_dir``: also write every raw frame to
    ``{record_dir}/{venue}_{product}.jsonl`` in lobstream's capture format.
    """

    def __init__(self, venue: Venue, products: List[str], url: Optional[str] = None, *,
                 exit_on_close: bool = False, record_dir: Optional[Union[str, Path]] = None,
                 silence_timeout: float = 30.0, batch_size: int = 1000) -> None:
        self.venue = venue
        self.products = list(products)
        self.url = url or venue.default_url
        self.exit_on_close = exit_on_close
        self.record_dir = Path(record_dir) if record_dir else None
        self.silence_timeout = silence_timeout
        self.batch_size = batch_size
        self.bad = BadInput()

    def list_parts(self) -> List[str]:
        return [book_key(self.venue.name, p) for p in self.products]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: Optional[Dict[str, int]]) -> "_WebsocketPartition":
        # A live feed has no replayable position: only the counters resume, and
        # the book waits for the fresh snapshot every (re)subscription brings.
        product = for_part.split(":", 1)[1]
        recorder = None
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            recorder = CaptureWriter(self.record_dir / f"{self.venue.name}_{product}.jsonl",
                                     source=f"lobstream recorder {self.url}")
        return _WebsocketPartition(self, product, recorder, resume_state)


class _WebsocketPartition(StatefulSourcePartition[Keyed, Dict[str, int]]):
    def __init__(self, source: WebsocketSource, product: str,
                 recorder: Optional[CaptureWriter], counts: Optional[Dict[str, int]]) -> None:
        self._key = book_key(source.venue.name, product)
        self._product = product
        self._batch_size = source.batch_size
        self._feed = Feed(source.venue, [product], source.bad, stream=self._key)
        self._feed.counts.update(counts or {})
        self._inbox: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self._conn = _Connection(source.url, self._inbox, self._key, source.venue.name,
                                 exit_on_close=source.exit_on_close, recorder=recorder,
                                 silence_timeout=source.silence_timeout)
        self._eof = False

    def next_batch(self) -> List[Keyed]:
        if self._eof or shutdown.requested():
            raise StopIteration()
        if not self._conn.is_alive() and not self._conn.started:
            self._conn.start()  # lazily: Bytewax may build a partition it then discards
        out: List[Keyed] = []
        feed = self._feed
        inbox = self._inbox
        for _ in range(self._batch_size):
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                break
            tag = item[0]
            if tag == _FRAME:
                feed.on_raw(item[1], item[2], out)
            elif tag == _CONNECTED:
                self._conn.send(feed.connected())
            elif tag == _DISCONNECTED:
                out.extend(feed.disconnected(item[1], item[2]))
            else:
                self._eof = True
                break
        request = control.take_resync(self._key)
        if request is not None:
            feed.resync(self._product, time.time() * 1000.0, request[0], request[1], out)
        if feed.outbox:
            self._conn.send(feed.outbox)
            feed.outbox = []
        if feed.refused and len(feed.refused) == len(feed.books):
            # The exchange refused everything this connection is for; retrying can
            # only end in a reconnect loop, so this partition ends (others go on).
            self._eof = True
        return out

    def next_awake(self) -> Optional[datetime]:
        return None

    def snapshot(self) -> Dict[str, int]:
        # Only the counters: a socket has no position to resume from.
        return dict(self._feed.counts)

    def close(self) -> None:
        self._conn.stop()


class _Connection(threading.Thread):
    """The socket side: connect, reconnect with backoff, timestamp and queue frames."""

    def __init__(self, url: str, inbox: "queue.SimpleQueue[tuple]", stream: str, venue: str, *,
                 exit_on_close: bool, recorder: Optional[CaptureWriter],
                 silence_timeout: float) -> None:
        super().__init__(name=f"lobstream-ws-{stream}", daemon=True)
        self.url = url
        self.inbox = inbox
        self.stream = stream
        self.venue = venue
        self.exit_on_close = exit_on_close
        self.recorder = recorder
        self.silence_timeout = silence_timeout
        self.started = False
        self.backoff = Backoff()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ws: Optional[ClientConnection] = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self.started = True
        super().start()

    def run(self) -> None:
        asyncio.run(self._main())

    def send(self, messages: List[Message]) -> None:
        """Queue messages for the current connection (dropped if there is none:
        a new connection resubscribes everything anyway)."""
        if messages and self._loop is not None:
            texts = [orjson.dumps(m).decode() for m in messages]
            try:
                self._loop.call_soon_threadsafe(self._send_now, texts)
            except RuntimeError:
                pass  # the loop is closed: the connection ended for good (end of input)

    def stop(self) -> None:
        self._stopping.set()
        loop, ws = self._loop, self._ws
        if loop is not None and ws is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(ws.close(), loop)
            except RuntimeError:
                pass
        if self.recorder is not None:
            self.recorder.close()

    def _send_now(self, texts: List[str]) -> None:
        if self._ws is not None:
            asyncio.ensure_future(self._send_in_order(self._ws, texts))

    async def _send_in_order(self, ws: ClientConnection, texts: List[str]) -> None:
        """Send one after another: an unsubscribe must reach the server before the
        subscribe that follows it."""
        try:
            for text in texts:
                if self.recorder is not None:
                    self.recorder.write(time.time() * 1000.0, self.venue, self.stream, text, "send")
                await ws.send(text)
        except WebSocketException:
            pass  # the reader sees the same failure and reconnects

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = time.monotonic()
            reason = await self._session()
            if reason is None:
                self.inbox.put((_EOF,))
                return
            up_for = time.monotonic() - started
            self.inbox.put((_DISCONNECTED, time.time() * 1000.0, reason))
            delay = self.backoff.next_delay(up_for)
            log.warning("%s: %s; reconnecting in %.2f s", self.stream, reason, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> Optional[str]:
        """One connection's life; the reason it ended, or None for end of input."""
        try:
            async with connect(self.url, max_size=MAX_FRAME_BYTES, open_timeout=10,
                               ping_interval=20, ping_timeout=20, close_timeout=2) as ws:
                self._ws = ws
                self.inbox.put((_CONNECTED,))
                put, rec = self.inbox.put, self.recorder
                while True:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), self.silence_timeout)
                    except ConnectionClosedOK:
                        break
                    ts = time.time() * 1000.0
                    put((_FRAME, raw, ts))
                    if rec is not None:
                        rec.write(ts, self.venue, self.stream, raw)
            code = ws.close_code
        except asyncio.TimeoutError:
            return f"no traffic for {self.silence_timeout:g} s"
        except WebSocketException as ex:
            return f"connection lost ({ex})"
        except OSError as ex:
            return f"cannot connect to {self.url}: {ex}"
        finally:
            self._ws = None
        if self._stopping.is_set() or (self.exit_on_close and code == 1000):
            return None
        return f"server closed the connection (code {code})"

"""One websocket connection's life on the socket thread: connect, read, send, reconnect.

A :class:`Connection` only moves bytes and timestamps them. Everything the frames
mean is decided by its :class:`~sources.feed.feed.Feed` on the Bytewax worker,
which reads them from the shared :class:`~sources.transport.inbox.Inbox`. Here:

* new connections (and reconnects) wait for the venue's connection limiter, so a
  flow opening 200 connections, or 200 reconnecting at once, never exceeds the
  exchange's connection rate; retries back off with jitter (:mod:`backoff`);
* outgoing messages go through a per-connection limiter at the venue's message
  rate, one after another in order (an unsubscribe must reach the server before
  the subscribe that follows it);
* a watchdog drops a connection that has been silent for ``silence_timeout``
  (the venues' heartbeats count as traffic), which is cheaper per frame than a
  timeout around every receive. It aborts the TCP connection rather than asking
  for a close handshake: the peer is presumed dead, and waiting up to
  ``close_timeout`` for its answer only delays the reconnect (and meanwhile
  frames a late peer sends would still be taken as live);
* frames are recorded, when asked, before they are handed over (the recorder
  blanks out the secrets of authenticated venues);
* websockets' own frame logging never runs: it would log the start and end of
  every payload at DEBUG, an authentication request's secret included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Deque, List, Optional

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketException

from sources.transport.backoff import Backoff
from sources.transport.inbox import Connected, Disconnected, Ended, Frame, Inbox
from sources.transport.limits import TokenBucket

log = logging.getLogger("lobstream.websocket")
#: The logger websockets writes to for lobstream's connections: held at INFO
#: whatever the root level, so its DEBUG frame dumps are never emitted.
wire_log = logging.getLogger("lobstream.websocket.wire")
wire_log.setLevel(logging.INFO)

#: Advanced Trade snapshots of deep books are single frames of several MB.
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Messages waiting to be sent on one connection. The feed deduplicates resyncs,
#: so reaching this means the server stopped reading; the connection is dropped.
MAX_PENDING_SENDS = 10_000


class Recorder:
    """What a connection needs from a capture recorder (see :mod:`sources.capture`)."""

    def write(self, ts: float, venue: str, stream: str, frame: Any,
              direction: str = "recv") -> None: ...

    def close(self) -> None: ...


class Connection:
    """One websocket to ``url`` for stream ``stream``; its frames go to ``inbox``
    tagged with ``index``."""

    def __init__(self, index: int, venue: str, url: str, stream: str, inbox: Inbox, *,
                 connects: TokenBucket, messages_per_second: float, exit_on_close: bool,
                 silence_timeout: float, recorder: Optional[Recorder] = None,
                 max_lifetime: Optional[float] = None) -> None:
        self.index = index
        self.venue = venue
        self.url = url
        self.stream = stream
        self.inbox = inbox
        self.connects = connects
        self.sends = TokenBucket(messages_per_second, burst=max(2.0, messages_per_second))
        self.exit_on_close = exit_on_close
        self.silence_timeout = silence_timeout
        self.recorder = recorder
        self.max_lifetime = max_lifetime
        self.backoff = Backoff()
        self._ws: Optional[ClientConnection] = None
        self._outgoing: Deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._silent = False
        #: The close was ours, to renew the connection (lifetime, server shutdown).
        self._recycle = False
        self._last_frame = 0.0

    # -- called on the socket thread's loop ------------------------------------
    def send(self, messages: List[Any]) -> None:
        """Queue messages for the current connection (dropped if there is none:
        a new connection resubscribes everything anyway)."""
        if self._ws is None:
            return
        self._outgoing.extend(orjson.dumps(m) for m in messages)
        if len(self._outgoing) > MAX_PENDING_SENDS:
            log.error("%s: %d messages waiting to be sent; the server is not reading, "
                      "reconnecting", self.stream, len(self._outgoing))
            self._outgoing.clear()
            asyncio.ensure_future(self._ws.close(1011, "send queue overflow"))
        self._wake.set()

    def reconnect(self) -> None:
        """Close the current connection; :meth:`run` opens a new one at once."""
        if self._ws is not None:
            self._recycle = True
            asyncio.ensure_future(self._ws.close(1000, "reconnecting"))

    def stop(self) -> None:
        """End the connection for good."""
        self._stopping = True
        self._wake.set()
        if self._ws is not None:
            asyncio.ensure_future(self._ws.close())

    async def run(self) -> None:
        """Connect, serve, reconnect, until stopped or the input ends."""
        try:
            while not self._stopping:
                await self.connects.wait()
                started = time.monotonic()
                reason = await self._session()
                if reason is None:
                    break
                self.inbox.put(Disconnected(self.index, time.time() * 1000.0, reason))
                delay = self.backoff.next_delay(time.monotonic() - started)
                log.warning("%s: %s; reconnecting in %.2f s", self.stream, reason, delay)
                await asyncio.sleep(delay)
        finally:
            self.inbox.put(Ended(self.index))

    async def _session(self) -> Optional[str]:
        """One connection's life; the reason it ended, or None for end of input."""
        code: Optional[int] = None
        try:
            async with connect(self.url, max_size=MAX_FRAME_BYTES, open_timeout=10,
                               ping_interval=20, ping_timeout=20, close_timeout=2,
                               logger=wire_log) as ws:
                self._ws = ws
                self._silent = self._recycle = False
                self._outgoing.clear()
                self._last_frame = time.monotonic()
                self.inbox.put(Connected(self.index, time.time() * 1000.0))
                tasks = [asyncio.ensure_future(self._sender(ws)),
                         asyncio.ensure_future(self._watchdog(ws))]
                try:
                    await self._reader(ws)
                finally:
                    for task in tasks:
                        task.cancel()
            code = ws.close_code
            if self._silent:
                return self._silence()
            if self._recycle:
                return "connection renewed"
        except WebSocketException as ex:
            return self._silence() if self._silent else f"connection lost ({ex})"
        except OSError as ex:
            return f"cannot connect to {self.url}: {ex.strerror or ex}"
        except asyncio.TimeoutError:
            return f"cannot connect to {self.url}: timed out"
        finally:
            self._ws = None
        if self._stopping or (self.exit_on_close and code == 1000):
            return None
        return f"server closed the connection (code {code})"

    def _silence(self) -> str:
        return f"no traffic for {self.silence_timeout:g} s"

    async def _reader(self, ws: ClientConnection) -> None:
        inbox, index, recorder = self.inbox, self.index, self.recorder
        clock = time.time
        while True:
            try:
                raw = await ws.recv(decode=False)
            except ConnectionClosedOK:
                return
            if self._silent:
                return  # given up on: frames still buffered from it are not live
            ts = clock() * 1000.0
            self._last_frame = time.monotonic()
            if recorder is not None:
                recorder.write(ts, self.venue, self.stream, raw)
            inbox.put_frame(Frame(index, raw if isinstance(raw, bytes) else raw.encode(), ts))

    async def _sender(self, ws: ClientConnection) -> None:
        outgoing = self._outgoing
        try:
            while True:
                while not outgoing:
                    self._wake.clear()
                    await self._wake.wait()
                await self.sends.wait()
                if not outgoing:
                    continue
                data = outgoing.popleft()
                if self.recorder is not None:
                    self.recorder.write(time.time() * 1000.0, self.venue, self.stream, data,
                                        "send")
                await ws.send(data.decode())
        except ConnectionClosed:
            pass  # the reader sees the same close and ends the session

    async def _watchdog(self, ws: ClientConnection) -> None:
        step = min(1.0, self.silence_timeout / 4)
        opened = time.monotonic()
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            if self.max_lifetime is not None and now - opened >= self.max_lifetime:
                # Renew before the server's own lifetime limit cuts us off mid-stream.
                self.reconnect()
                return
            if now - self._last_frame >= self.silence_timeout:
                self._silent = True
                ws.transport.abort()
                return

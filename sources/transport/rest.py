"""Bounded, rate-limited async HTTP GET for venue REST APIs.

Used for instrument lists at start and, next, Binance depth snapshots fetched while
the websockets stream. Built on aiohttp because it is asyncio-native (requests run
on the websocket thread's event loop: no thread pool, no second loop), pools
keep-alive connections per host in one session, can limit connections per host, and
is mature and maintained. One client belongs to one event loop.

Per host (``host:port``), every request:

* is refused at once (:class:`RestError` ``queue_full``) when ``max_concurrent``
  are in flight and ``max_queued`` more are waiting: callers never pile up;
* waits, in arrival order, for its ``weight`` in the host's budget
  (:class:`~sources.transport.ratelimit.WeightBudget`); the venue's used-weight
  header (``X-MBX-USED-WEIGHT-1M``) tightens it. A wait longer than ``max_wait``
  fails at once instead;
* after an HTTP 429 waits, with every other request to that host, for
  ``Retry-After`` (or a backoff delay without one), then is retried;
* after an HTTP 418 (Binance: IP banned) fails, and so does every request to that
  host until ``Retry-After`` ends, without sending anything: sending more would
  lengthen the ban. One error line is logged per ban;
* after a 5xx, a timeout or a broken connection is retried up to ``retries`` times,
  after jittered exponential delays. It gives its connection slot back while it
  waits, so one failing or slow request (one symbol's snapshot) never holds up the
  others beyond its own slot;
* fails without retry on other statuses and on a body above ``max_body`` bytes
  (counted after decompression, so a small gzip bomb is caught too).

Every failure is one :class:`RestError` with a one-line message. Counters per host
(:meth:`RestClient.stats`) feed the status line and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Mapping, NamedTuple, Optional

import aiohttp
from yarl import URL

from sources.transport.backoff import Backoff
from sources.transport.ratelimit import RateLimit, WeightBudget

log = logging.getLogger("lobstream.rest")

USER_AGENT = "lobstream/0.1"
#: Binance bans for 2 minutes at least; used when a 418 comes without Retry-After.
DEFAULT_BAN = 120.0
_MAX_RETRY_AFTER = 3 * 86_400.0  # Binance bans last 3 days at most
_CHUNK = 64 * 1024
_SAMPLE = 120


@dataclass(frozen=True)
class HostLimits:
    """Bounds for one host. ``max_body`` is in bytes after decompression; Binance
    spot ``exchangeInfo`` measured 1.9 MB in 2021 with 1,695 symbols, and the list
    keeps growing."""

    rate: RateLimit = RateLimit(10, 1.0)
    max_concurrent: int = 4
    max_queued: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: Whole attempt, headers to last byte: a server dripping bytes slower than
    #: ``read_timeout`` apart could otherwise hold a slot for ever.
    attempt_timeout: float = 30.0
    max_body: int = 32 * 1024 * 1024
    retries: int = 3
    backoff_first: float = 0.5
    backoff_cap: float = 8.0
    max_wait: float = 60.0


class RestError(Exception):
    """A request that failed; ``kind`` is one of ``queue_full``, ``banned``,
    ``rate_limited``, ``budget``, ``timeout``, ``connection``, ``status``,
    ``too_large``, ``bad_url``, ``internal``, and ``bad_body`` (raised by callers
    whose parser rejects a reply). ``str()`` is one line."""

    def __init__(self, kind: str, url: Any, reason: str, status: Optional[int] = None) -> None:
        super().__init__(f"GET {str(url)[:200]}: {reason}")
        self.kind = kind
        self.status = status


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str]


@dataclass
class HostStats:
    """Counters of one host. ``requests`` counts attempts sent; ``rejected`` the
    requests refused locally (queue full, banned, a wait above ``max_wait``);
    ``failed`` the ones that ended in an error after sending; ``weight`` the weight
    spent; ``venue_weight`` the venue's last used-weight report."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    bans: int = 0
    rejected: int = 0
    failed: int = 0
    weight: int = 0
    venue_weight: int = 0


@dataclass
class _Host:
    name: str
    limits: HostLimits
    budget: WeightBudget = field(init=False)
    slots: asyncio.Semaphore = field(init=False)
    admission: asyncio.Lock = field(default_factory=asyncio.Lock)
    stats: HostStats = field(default_factory=HostStats)
    pending: int = 0
    in_flight: int = 0
    paused_until: float = 0.0
    banned_until: float = 0.0

    def __post_init__(self) -> None:
        self.budget = WeightBudget(self.limits.rate)
        self.slots = asyncio.Semaphore(self.limits.max_concurrent)


class _Transient(Exception):
    """A timeout or broken connection: worth another attempt."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class RestClient:
    """GET requests with the per-host bounds of :class:`HostLimits`.

    ``limits`` applies to hosts without an entry in ``per_host`` (keys
    ``host:port``) or a :meth:`configure` call. Use as ``async with RestClient()
    as client`` or call :meth:`close`.
    """

    def __init__(self, limits: HostLimits = HostLimits(),
                 per_host: Optional[Mapping[str, HostLimits]] = None,
                 rng: Optional[random.Random] = None) -> None:
        self._default = limits
        self._configured: Dict[str, HostLimits] = dict(per_host or {})
        self._hosts: Dict[str, _Host] = {}
        self._session: Optional[aiohttp.ClientSession] = None
        self._rng = rng or random.Random()

    async def __aenter__(self) -> "RestClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def configure(self, url: str, limits: HostLimits) -> bool:
        """Set the limits of ``url``'s host unless it already has some; the first
        setting wins so a caller's explicit choice is never overridden."""
        key = _host_key(URL(url))
        if key in self._configured or key in self._hosts:
            return False
        self._configured[key] = limits
        return True

    def stats(self) -> Dict[str, Dict[str, int]]:
        """Counters and gauges (``in_flight``, ``pending``, ``budget_used``) per host."""
        now = time.monotonic()
        return {name: {**asdict(h.stats), "in_flight": h.in_flight, "pending": h.pending,
                       "budget_used": h.budget.used(now)}
                for name, h in self._hosts.items()}

    async def get(self, url: str, *, params: Optional[Mapping[str, str]] = None,
                  weight: int = 1, headers: Optional[Mapping[str, str]] = None) -> Reply:
        """GET ``url`` (plus ``params``) costing ``weight``; a 2xx :class:`Reply` or
        :class:`RestError`."""
        try:
            target = URL(url)
            if params:
                target = target.update_query(params)
            if target.scheme not in ("http", "https") or not target.host:
                raise ValueError("expected an http:// or https:// URL")
        except (ValueError, TypeError) as ex:
            raise RestError("bad_url", url, str(ex)) from None
        host = self._host(target)
        limits = host.limits
        if isinstance(weight, bool) or not isinstance(weight, int) \
                or not 1 <= weight <= limits.rate.limit:
            raise RestError("budget", target, f"weight {weight} is outside 1..{limits.rate.limit}, "
                            f"the budget per {limits.rate.window:g} s")
        if host.pending >= limits.max_concurrent + limits.max_queued:
            host.stats.rejected += 1
            raise RestError("queue_full", target, f"{host.pending} requests to {host.name} are "
                            "already in flight or queued")
        host.pending += 1
        try:
            return await self._attempts(host, target, weight, headers)
        except (RestError, asyncio.CancelledError):
            raise
        except Exception as ex:  # a bug must still reach the caller as a RestError
            log.exception("%s: unexpected error", host.name)
            raise RestError("internal", target, f"{type(ex).__name__}: {ex}") from None
        finally:
            host.pending -= 1

    def _host(self, url: URL) -> _Host:
        key = _host_key(url)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key, self._configured.get(key, self._default))
        return host

    async def _attempts(self, host: _Host, url: URL, weight: int,
                        headers: Optional[Mapping[str, str]]) -> Reply:
        limits = host.limits
        backoff = Backoff(limits.backoff_first, limits.backoff_cap, math.inf, self._rng)
        attempt = 1
        while True:
            await self._admit(host, url, weight)
            # ``delay``: this request's own wait; ``pause``: the whole host's (429),
            # which _admit makes every request wait out.
            delay = pause = 0.0
            try:
                reply = await self._send(host, url, headers)
            except _Transient as ex:
                kind, reason, status = ex.kind, str(ex), None
                delay = backoff.next_delay(0.0)
            else:
                self._observe(host, reply)
                status = reply.status
                if 200 <= status < 300:
                    return reply
                kind, reason = "status", f"HTTP {status}"
                if status == 418:
                    self._ban(host, url, reply)
                    host.stats.failed += 1
                    raise RestError("banned", url, f"HTTP 418: {host.name} banned this IP for "
                                    f"{host.banned_until - time.monotonic():.0f} s", status)
                if status == 429:
                    kind = "rate_limited"
                    pause = _retry_after(reply.headers) or backoff.next_delay(0.0)
                    self._pause(host, pause)
                elif status >= 500:
                    delay = max(backoff.next_delay(0.0), _retry_after(reply.headers) or 0.0)
                else:
                    host.stats.failed += 1
                    raise RestError("status", url, f"HTTP {status}: {_sample(reply.body)}", status)
            if attempt > limits.retries:
                host.stats.failed += 1
                raise RestError(kind, url, f"{reason} ({attempt} attempts)", status)
            if max(delay, pause) > limits.max_wait:
                host.stats.failed += 1
                raise RestError(kind, url, f"{reason}; asked to wait {max(delay, pause):.0f} s, "
                                f"more than max_wait {limits.max_wait:g} s", status)
            attempt += 1
            host.stats.retries += 1
            await asyncio.sleep(delay)

    async def _admit(self, host: _Host, url: URL, weight: int) -> None:
        """Wait (in arrival order) until the host is neither banned nor paused and
        the budget has room for ``weight``, then spend it."""
        async with host.admission:
            while True:
                now = time.monotonic()
                if now < host.banned_until:
                    host.stats.rejected += 1
                    raise RestError("banned", url, f"{host.name} banned this IP (HTTP 418); "
                                    f"nothing is sent for another {host.banned_until - now:.0f} s")
                wait = max(host.paused_until - now, host.budget.wait(weight, now))
                if wait <= 0.0:
                    break
                if wait > host.limits.max_wait:
                    host.stats.rejected += 1
                    raise RestError("rate_limited", url, f"would wait {wait:.0f} s for {host.name}'s"
                                    f" rate limit, more than max_wait {host.limits.max_wait:g} s")
                await asyncio.sleep(wait)
            host.budget.spend(weight, now)
            host.stats.weight += weight

    async def _send(self, host: _Host, url: URL, headers: Optional[Mapping[str, str]]) -> Reply:
        limits = host.limits
        async with host.slots:
            if time.monotonic() < host.banned_until:  # a ban began while this one waited
                host.stats.rejected += 1
                raise RestError("banned", url, f"{host.name} banned this IP (HTTP 418)")
            host.in_flight += 1
            host.stats.requests += 1
            try:
                async with self._client().get(url, headers=headers, allow_redirects=False,
                                              timeout=aiohttp.ClientTimeout(
                                                  total=limits.attempt_timeout,
                                                  sock_connect=limits.connect_timeout,
                                                  sock_read=limits.read_timeout)) as resp:
                    size = resp.content_length
                    if size is not None and size > limits.max_body:
                        raise self._too_large(host, url, size)
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > limits.max_body:
                            raise self._too_large(host, url, size)
                        chunks.append(chunk)
                    return Reply(resp.status, b"".join(chunks), resp.headers)
            except TimeoutError:
                raise _Transient("timeout", f"no complete reply within the timeouts (connect "
                                 f"{limits.connect_timeout:g} s, read {limits.read_timeout:g} s, "
                                 f"attempt {limits.attempt_timeout:g} s)") from None
            except aiohttp.InvalidURL as ex:
                raise RestError("bad_url", url, str(ex)) from None
            except (aiohttp.ClientError, OSError) as ex:
                raise _Transient("connection", f"{type(ex).__name__}: {str(ex)[:_SAMPLE]}") from None
            finally:
                host.in_flight -= 1

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Per-host limits are the semaphores above; the connector only caps the total.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=0),
                headers={"User-Agent": USER_AGENT})
        return self._session

    def _too_large(self, host: _Host, url: URL, size: int) -> RestError:
        host.stats.failed += 1
        return RestError("too_large", url, f"body of {size} bytes or more exceeds max_body "
                         f"{host.limits.max_body}")

    def _observe(self, host: _Host, reply: Reply) -> None:
        header = host.limits.rate.used_header
        value = reply.headers.get(header) if header else None
        if value is not None and value.isdigit() and len(value) <= 9:
            host.stats.venue_weight = int(value)
            host.budget.observe(int(value), time.monotonic(), time.time())

    def _pause(self, host: _Host, seconds: float) -> None:
        host.stats.rate_limited += 1
        now = time.monotonic()
        if now >= host.paused_until:
            log.warning("%s: rate limited (HTTP 429); no requests to it for %.1f s",
                        host.name, seconds)
        host.paused_until = max(host.paused_until, now + seconds)

    def _ban(self, host: _Host, url: URL, reply: Reply) -> None:
        host.stats.bans += 1
        seconds = _retry_after(reply.headers) or DEFAULT_BAN
        now = time.monotonic()
        if now >= host.banned_until:
            until = time.strftime("%H:%M:%S", time.gmtime(time.time() + seconds))
            log.error("%s: IP banned (HTTP 418 on %s) for %.0f s; no requests to it until "
                      "%s UTC", host.name, url.path, seconds, until)
        host.banned_until = max(host.banned_until, now + seconds)


def _host_key(url: URL) -> str:
    return f"{url.host}:{url.port}"


def _retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), bounded; None if
    absent or unreadable."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _sample(body: bytes) -> str:
    return body[:_SAMPLE].decode("utf-8", "replace").replace("\n", " ")

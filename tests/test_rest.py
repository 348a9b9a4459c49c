"""The REST client and the instrument fetcher against a real HTTP server on 127.0.0.1.

``VenueServer`` (aiohttp.web, a free port) serves the bundled reference bodies
(recordings/reference/) gzip-encoded on the venues' own paths, and misbehaves on
request: each request to a path takes the next action of that path's script. The
tests measure what the client sends (counts, the server's arrival times) and
assert bounds, never exact timings: waits the client must honour are lower bounds,
and upper bounds are generous for a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Deque, Dict, List, NamedTuple, Optional, Tuple

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.instruments.fetch import fetch_instruments, fetch_instruments_blocking
from sources.instruments.venues import APIS
from sources.transport.ratelimit import RateLimit, WeightBudget
from sources.transport.rest import HostLimits, RestClient, RestError
from tests.helpers import run

REFERENCE = Path(__file__).resolve().parent.parent / "recordings" / "reference"
FILES = {
    "/api/v3/brokerage/market/products": "coinbase_products",
    "/products": "coinbase_exchange_products",
    "/api/v3/exchangeInfo": "binance_exchange_info",
    "/fapi/v1/exchangeInfo": "binance_usdm_exchange_info",
    "/dapi/v1/exchangeInfo": "binance_coinm_exchange_info",
}
DERIBIT = "/api/v2/public/get_instruments"
PATH = "/fapi/v1/exchangeInfo"  # the path most client tests use
#: Quick retries so failure paths finish in seconds.
FAST = HostLimits(retries=3, backoff_first=0.2, backoff_cap=1.0, read_timeout=2.0)


class Hit(NamedTuple):
    mono: float
    wall: float
    path: str
    query: Dict[str, str]
    user_agent: str


class VenueServer:
    """The venues' REST endpoints on 127.0.0.1, scripted per path."""

    def __init__(self) -> None:
        self.script: Dict[str, Deque[Tuple[Any, ...]]] = defaultdict(deque)
        self.hits: List[Hit] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self._runner: Optional[web.AppRunner] = None
        self.url = ""

    def plan(self, path: str, *actions: Tuple[Any, ...]) -> None:
        self.script[path].extend(actions)

    def hits_to(self, path: str) -> List[Hit]:
        return [h for h in self.hits if h.path == path]

    async def __aenter__(self) -> "VenueServer":
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(Hit(time.monotonic(), time.time(), request.path, dict(request.query),
                             request.headers.get("User-Agent", "")))
        script = self.script.get(request.path)
        action = script.popleft() if script else ("ok",)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._act(request, action)
        finally:
            self.in_flight -= 1

    async def _act(self, request: web.Request, action: Tuple[Any, ...]) -> web.StreamResponse:
        what = action[0]
        if what == "status":  # ("status", code, headers, delay)
            _, code, headers, *delay = action
            if delay:
                await asyncio.sleep(delay[0])
            return web.Response(status=code, headers=headers, text=f'{{"code":{code}}}')
        if what == "slow":
            await asyncio.sleep(action[1])
        elif what == "hold":
            await self.release.wait()
        elif what == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        elif what == "big":  # a plain body of n bytes, with its Content-Length
            return web.Response(body=b"x" * action[1])
        elif what == "stream":  # ("stream", n, chunk, pause): chunked, no length, paced
            _, size, chunk, pause = action
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for _ in range(0, size, chunk):
                await resp.write(b"x" * chunk)
                await asyncio.sleep(pause)
            await resp.write_eof()
            return resp
        elif what == "bomb":  # n zero bytes, gzip-encoded (~1 KB per MB on the wire)
            return web.Response(body=gzip.compress(bytes(action[1])),
                                headers={"Content-Encoding": "gzip"})
        elif what == "text":
            return web.Response(body=action[1])
        return self._reference(request, action[1] if what == "weight" else None)

    def _reference(self, request: web.Request, used: Optional[int]) -> web.Response:
        if request.path == DERIBIT:
            name = f"deribit_instruments_{request.query.get('currency')}"
            if not (REFERENCE / f"{name}.json.gz").exists():
                return web.Response(status=400, content_type="application/json",
                                    text='{"jsonrpc":"2.0","error":{"code":-32602,'
                                         '"message":"Invalid params","data":{"param":"currency"}}}')
        elif request.path in FILES:
            name = FILES[request.path]
        else:
            return web.Response(status=404, text="not found")
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        if used is not None:
            headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return web.Response(body=(REFERENCE / f"{name}.json.gz").read_bytes(), headers=headers)


def reference_symbols(venue: str, names: List[str]) -> List[str]:
    out: List[str] = []
    for name in names:
        out += [i.symbol for i in APIS[venue].parse(
            gzip.decompress((REFERENCE / f"{name}.json.gz").read_bytes()))[0]]
    return out


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition`` every 10 ms for at most ``timeout`` seconds."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


# --- fetching instrument lists -----------------------------------------------------

@pytest.mark.parametrize("venue", ["coinbase", "coinbase_exchange", "binance", "binance_usdm",
                                   "binance_coinm"])
def test_fetch_from_the_venue_path(venue: str) -> None:
    async def main() -> None:
        async with VenueServer() as server:
            fetched = await fetch_instruments(venue, server.url + "/")
            path = APIS[venue].path
            assert [i.symbol for i in fetched.instruments] == reference_symbols(venue, [FILES[path]])
            assert [h.path for h in server.hits] == [path]
            assert server.hits[0].user_agent.startswith("lobstream/")
    run(main(), 30)


def test_fetch_deribit_one_request_per_currency_at_one_per_second() -> None:
    async def main() -> None:
        async with VenueServer() as server:
            fetched = await fetch_instruments("deribit", server.url, names=["SOL-PERPETUAL"])
            files = [f"deribit_instruments_{c}" for c in ("BTC", "ETH", "USDC", "SOL")]
            assert sorted(i.symbol for i in fetched.instruments) == \
                sorted(reference_symbols("deribit", files))
            assert len(fetched.instruments) == 398 + 426 + 16 + 177
            assert sorted(h.query["currency"] for h in server.hits) == ["BTC", "ETH", "SOL", "USDC"]
            assert all(h.query["expired"] == "false" for h in server.hits)
            times = sorted(h.mono for h in server.hits)
            # get_instruments allows 1 request/s: each request at least ~1 s after the last.
            assert all(b - a >= 0.95 for a, b in zip(times, times[1:])), times
    run(main(), 30)


def test_fetch_errors_are_rest_errors() -> None:
    async def main() -> None:
        async with VenueServer() as server:
            with pytest.raises(RestError) as info:
                await fetch_instruments("deribit", server.url, currencies=["DOGE"])
            assert info.value.kind == "status" and info.value.status == 400
            assert "Invalid params" in str(info.value) and "\n" not in str(info.value)
            server.plan("/products", ("text", b"<html>maintenance</html>"))
            with pytest.raises(RestError, match="coinbase_exchange: instrument list is not JSON") as info:
                await fetch_instruments("coinbase_exchange", server.url)
            assert info.value.kind == "bad_body"
    run(main(), 30)


def test_fetch_shares_a_client_and_keeps_its_limits() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient() as client:
            mine = HostLimits(rate=RateLimit(100, 1.0))
            assert client.configure(server.url, mine)
            await fetch_instruments("deribit", server.url, client=client, currencies=["BTC", "ETH"])
            # The client's own limits stayed (no 1 request/s spacing), and it stays open.
            hits = sorted(h.mono for h in server.hits)
            assert len(hits) == 2 and hits[1] - hits[0] < 0.9
            assert (await client.get(server.url + PATH)).status == 200
            stats = client.stats()[server.url.split("//")[1]]
            assert stats["requests"] == 3 and stats["weight"] == 3
    run(main(), 30)


def test_blocking_wrapper_from_plain_code() -> None:
    ready = threading.Event()
    stop: Dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            async with VenueServer() as server:
                stop["url"], stop["event"] = server.url, asyncio.Event()
                stop["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop["event"].wait()
        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        fetched = fetch_instruments_blocking("binance_coinm", stop["url"], timeout=20)
        assert len(fetched.instruments) == 36 and fetched.skipped.total == 0
        with pytest.raises(RestError, match="not fetched within 0.5 s"):
            fetch_instruments_blocking("deribit", stop["url"], timeout=0.5,
                                       currencies=["BTC", "ETH", "SOL", "USDC"])
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(10)
    assert not thread.is_alive()


# --- retries, backoff, timeouts ----------------------------------------------------

def test_5xx_is_retried_with_growing_delays() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(FAST) as client:
            server.plan(PATH, ("status", 500, {}), ("status", 503, {}))
            reply = await client.get(server.url + PATH)
            assert reply.status == 200
            assert reply.body == gzip.decompress((REFERENCE / f"{FILES[PATH]}.json.gz").read_bytes())
            times = [h.mono for h in server.hits]
            assert len(times) == 3
            # Jittered exponential: delay n is in [0.5, 1] x first x 2^n.
            assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2
            stats = next(iter(client.stats().values()))
            assert (stats["requests"], stats["retries"], stats["failed"]) == (3, 2, 0)
    run(main(), 30)


def test_retry_cap() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(FAST) as client:
            server.plan(PATH, *[("status", 502, {})] * 10)
            with pytest.raises(RestError) as info:
                await client.get(server.url + PATH)
            assert info.value.kind == "status" and info.value.status == 502
            assert str(info.value).endswith("HTTP 502 (4 attempts)")
            assert len(server.hits) == 4  # 1 + retries=3, then it stops
            stats = next(iter(client.stats().values()))
            assert (stats["retries"], stats["failed"]) == (3, 1)
    run(main(), 30)


def test_other_4xx_is_not_retried() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(FAST) as client:
            with pytest.raises(RestError, match=r"HTTP 404: not found") as info:
                await client.get(server.url + "/nowhere")
            assert info.value.status == 404 and len(server.hits) == 1
    run(main(), 30)


def test_slow_reply_times_out_and_is_retried() -> None:
    async def main() -> None:
        limits = HostLimits(read_timeout=0.5, retries=2, backoff_first=0.1)
        async with VenueServer() as server, RestClient(limits) as client:
            server.plan(PATH, ("slow", 3.0))
            started = time.monotonic()
            reply = await client.get(server.url + PATH)
            assert reply.status == 200 and len(server.hits) == 2
            assert time.monotonic() - started >= 0.5
            assert server.hits[1].mono - server.hits[0].mono < 2.9  # did not wait for the slow one
            server.plan(PATH, *[("slow", 3.0)] * 3)
            with pytest.raises(RestError, match=r"no complete reply within .*read 0.5 s.*\(3 attempts\)"):
                await client.get(server.url + PATH)
    run(main(), 30)


def test_attempt_timeout_bounds_a_dripping_reply() -> None:
    async def main() -> None:
        # 100 bytes every 0.2 s never trips the 1 s read timeout; the attempt's does.
        limits = HostLimits(read_timeout=1.0, attempt_timeout=1.5, retries=0)
        async with VenueServer() as server, RestClient(limits) as client:
            server.plan(PATH, ("stream", 2_000, 100, 0.2))
            started = time.monotonic()
            with pytest.raises(RestError) as info:
                await client.get(server.url + PATH)
            assert info.value.kind == "timeout" and 1.4 <= time.monotonic() - started < 3.9
    run(main(), 30)


def test_connection_reset_is_retried() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(FAST) as client:
            server.plan(PATH, ("reset",), ("reset",))
            assert (await client.get(server.url + PATH)).status == 200
            assert len(server.hits) == 3
            server.hits.clear()
            server.plan(PATH, *[("reset",)] * 20)
            with pytest.raises(RestError, match=r"ServerDisconnectedError.*\(4 attempts\)") as info:
                await client.get(server.url + PATH)
            assert info.value.kind == "connection"
            # aiohttp resends an idempotent GET once on a dropped connection (RFC 9112
            # 9.3.1), so the server sees at most two sends per attempt.
            assert 4 <= len(server.hits) <= 8
    run(main(), 30)


def test_connection_refused() -> None:
    async def main() -> None:
        async with VenueServer() as server:
            url = server.url  # the port is free again once the server is gone
        async with RestClient(HostLimits(retries=1, backoff_first=0.05)) as client:
            with pytest.raises(RestError) as info:
                await client.get(url + PATH)
            assert info.value.kind == "connection" and "(2 attempts)" in str(info.value)
    run(main(), 30)


# --- rate limits -------------------------------------------------------------------

def test_429_pauses_the_host_for_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(FAST) as client:
            server.plan(PATH, ("status", 429, {"Retry-After": "1"}))
            first = asyncio.create_task(client.get(server.url + PATH))
            await wait_for(lambda: server.hits)
            other = await client.get(server.url + "/dapi/v1/exchangeInfo")  # same host
            assert (await first).status == 200 and other.status == 200
            t429 = server.hits[0].mono
            assert all(h.mono - t429 >= 0.95 for h in server.hits[1:]), server.hits
            stats = next(iter(client.stats().values()))
            assert (stats["rate_limited"], stats["retries"], stats["failed"]) == (1, 1, 0)
    with caplog.at_level(logging.WARNING, logger="lobstream.rest"):
        run(main(), 30)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "rate limited (HTTP 429); no requests to it for 1.0 s"]


def test_429_without_retry_after_backs_off() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(FAST) as client:
            server.plan(PATH, ("status", 429, {}), ("status", 429, {}))
            assert (await client.get(server.url + PATH)).status == 200
            times = [h.mono for h in server.hits]
            assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2
    run(main(), 30)


def test_429_asking_more_than_max_wait_fails_at_once() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(HostLimits(max_wait=5.0)) as client:
            server.plan(PATH, ("status", 429, {"Retry-After": "30"}))
            started = time.monotonic()
            with pytest.raises(RestError, match="asked to wait 30 s, more than max_wait 5 s"):
                await client.get(server.url + PATH)
            with pytest.raises(RestError, match="would wait 30 s") as info:
                await client.get(server.url + PATH)  # the host is still paused: not sent
            assert info.value.kind == "rate_limited"
            assert len(server.hits) == 1 and time.monotonic() - started < 5
            assert next(iter(client.stats().values()))["rejected"] == 1
    run(main(), 30)


def test_418_ban_stops_every_request_until_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        limits = HostLimits(max_concurrent=1, retries=3, backoff_first=0.1)
        async with VenueServer() as server, RestClient(limits) as client:
            # The banned request is in flight; another waits for the only slot.
            server.plan(PATH, ("status", 418, {"Retry-After": "2"}, 0.3))
            banned = asyncio.create_task(client.get(server.url + PATH))
            queued = asyncio.create_task(client.get(server.url + "/dapi/v1/exchangeInfo"))
            for task in (banned, queued):
                with pytest.raises(RestError) as info:
                    await task
                assert info.value.kind == "banned"
            ban_start = server.hits[0].mono + 0.3
            for _ in range(3):
                with pytest.raises(RestError, match="banned this IP") as info:
                    await client.get(server.url + PATH)
            assert len(server.hits) == 1  # nothing else was sent during the ban
            await asyncio.sleep(max(0.0, ban_start + 2.05 - time.monotonic()))
            assert (await client.get(server.url + PATH)).status == 200
            assert server.hits[1].mono >= ban_start + 1.95
            stats = next(iter(client.stats().values()))
            assert (stats["bans"], stats["rejected"], stats["retries"]) == (1, 4, 0)
    with caplog.at_level(logging.WARNING, logger="lobstream.rest"):
        run(main(), 30)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "IP banned (HTTP 418 on /fapi/v1/exchangeInfo) for 2 s" in errors[0].getMessage()


def test_weight_budget_spaces_requests() -> None:
    async def main() -> None:
        limits = HostLimits(rate=RateLimit(10, 1.0))
        async with VenueServer() as server, RestClient(limits) as client:
            replies = await asyncio.gather(*(client.get(server.url + PATH, weight=4)
                                             for _ in range(3)))
            assert all(r.status == 200 for r in replies)
            times = sorted(h.mono for h in server.hits)
            assert times[1] - times[0] < 0.5 and times[2] - times[0] >= 0.95
            with pytest.raises(RestError, match="weight 11 is outside 1..10") as info:
                await client.get(server.url + PATH, weight=11)
            assert info.value.kind == "budget" and len(server.hits) == 3
            assert next(iter(client.stats().values()))["weight"] == 12
    run(main(), 30)


def test_used_weight_header_tightens_the_budget() -> None:
    async def main() -> None:
        # A 2 s window stands for Binance's minute: the venue says 19 of 20 are used.
        limits = HostLimits(rate=RateLimit(20, 2.0, "X-MBX-USED-WEIGHT-1M"))
        async with VenueServer() as server, RestClient(limits) as client:
            server.plan(PATH, ("weight", 19))
            await client.get(server.url + PATH)
            assert next(iter(client.stats().values()))["venue_weight"] == 19
            await client.get(server.url + PATH, weight=2)
            first, second = server.hits
            # The second went out only once the venue's window had rolled over.
            assert math.floor(second.wall / 2.0) > math.floor(first.wall / 2.0)
    run(main(), 30)


# --- bounds ------------------------------------------------------------------------

def test_queue_is_bounded() -> None:
    async def main() -> None:
        limits = HostLimits(max_concurrent=2, max_queued=3)
        async with VenueServer() as server, RestClient(limits) as client:
            server.plan(PATH, *[("hold",)] * 5)
            tasks = [asyncio.create_task(client.get(server.url + PATH)) for _ in range(8)]
            await wait_for(lambda: sum(t.done() for t in tasks) == 3 and len(server.hits) == 2)
            for task in [t for t in tasks if t.done()]:
                with pytest.raises(RestError, match="5 requests to .* already in flight or queued"):
                    task.result()
            assert next(iter(client.stats().values()))["pending"] == 5
            server.release.set()
            done = [await t for t in tasks if not t.done() or t.exception() is None]
            assert len(done) == 5 and server.max_in_flight == 2
            stats = next(iter(client.stats().values()))
            assert (stats["rejected"], stats["pending"], stats["in_flight"]) == (3, 0, 0)
    run(main(), 30)


def test_a_stuck_request_does_not_stall_the_others() -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(HostLimits(max_concurrent=2)) as client:
            server.plan("/api/v3/exchangeInfo", ("hold",))
            stuck = asyncio.create_task(client.get(server.url + "/api/v3/exchangeInfo"))
            await wait_for(lambda: server.hits)
            for _ in range(5):
                assert (await client.get(server.url + PATH)).status == 200
            assert not stuck.done()
            server.release.set()
            assert (await stuck).status == 200
    run(main(), 30)


def test_backoff_gives_the_slot_back() -> None:
    async def main() -> None:
        limits = HostLimits(max_concurrent=1, backoff_first=1.0, backoff_cap=1.0)
        async with VenueServer() as server, RestClient(limits) as client:
            server.plan(PATH, ("status", 500, {}))
            failing = asyncio.create_task(client.get(server.url + PATH))
            await wait_for(lambda: server.hits)
            assert (await client.get(server.url + "/dapi/v1/exchangeInfo")).status == 200
            assert (await failing).status == 200
            assert [h.path for h in server.hits] == [PATH, "/dapi/v1/exchangeInfo", PATH]
    run(main(), 30)


@pytest.mark.parametrize("action,limit", [
    (("big", 200_000), 100_000),             # Content-Length says so: refused unread
    (("stream", 200_000, 65_536, 0.0), 100_000),  # no length: counted while reading
    (("bomb", 4_000_000), 1_000_000),        # 4 KB on the wire, 4 MB decompressed
])
def test_oversized_body(action: Tuple[Any, ...], limit: int) -> None:
    async def main() -> None:
        async with VenueServer() as server, RestClient(HostLimits(max_body=limit)) as client:
            server.plan(PATH, action)
            with pytest.raises(RestError, match=f"exceeds max_body {limit}") as info:
                await client.get(server.url + PATH)
            assert info.value.kind == "too_large" and len(server.hits) == 1  # not retried
            # The real Advanced Trade list is 68 KB gzip, 1.13 MB decompressed.
            with pytest.raises(RestError, match="exceeds max_body"):
                await client.get(server.url + "/api/v3/brokerage/market/products")
    run(main(), 30)


@pytest.mark.parametrize("url,message", [
    ("ftp://127.0.0.1/x", "expected an http:// or https:// URL"),
    ("http://", "expected an http:// or https:// URL"),
])
def test_bad_urls(url: str, message: str) -> None:
    async def main() -> None:
        async with RestClient() as client:
            with pytest.raises(RestError, match=message) as info:
                await client.get(url)
            assert info.value.kind == "bad_url"
    run(main(), 10)


# --- the budget itself, against a brute-force count ---------------------------------

@settings(max_examples=500, deadline=None)
@given(limit=st.integers(1, 30), window=st.sampled_from([0.5, 1.0, 60.0]),
       steps=st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(1, 30),
                                st.one_of(st.none(), st.integers(0, 40))), max_size=40))
def test_budget_never_exceeds_its_window(limit: int, window: float,
                                         steps: List[Tuple[float, int, Optional[int]]]) -> None:
    """Spend each weight as soon as ``wait`` allows: no window holds more than the
    limit, the wait is the shortest that works, and a venue report is honoured."""
    budget = WeightBudget(RateLimit(limit, window))
    now, wall = 1000.0, 5000.25
    spent: List[Tuple[float, int]] = []
    report: Optional[Tuple[int, int, float]] = None  # (used, spends before it, until)
    for gap, weight, used in steps:
        now += gap
        wall += gap
        weight = min(weight, limit)
        if used is not None:
            budget.observe(used, now, wall)
            report = (used, len(spent), now + (window - wall % window))
        wait = budget.wait(weight, now)
        at = now + wait
        for _ in range(3):  # as the client does: check again after the wait (float rounding)
            extra = budget.wait(weight, at)
            if extra == 0.0:
                break
            assert extra < 1e-9
            at = math.nextafter(at + extra, math.inf)
        assert budget.wait(weight, at) == 0.0

        def load(t: float) -> int:
            local = sum(w for ts, w in spent if ts <= t < ts + window)
            if report is not None and t < report[2]:
                local = max(local, report[0] + sum(w for _, w in spent[report[1]:]))
            return local
        assert load(at) + weight <= limit
        if wait > 1e-5:
            assert load(at - 1e-5) + weight > limit
        budget.spend(weight, at)
        spent.append((at, weight))
        now, wall = at, wall + wait
        assert budget.used(now) == load(now)

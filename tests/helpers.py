"""Helpers several test modules share: a bounded websocket client, output readers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Sequence, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sources.runtime.placement import VenueRun, plan_connections
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.transport.websocket import WebsocketSource
from sources.venues import get_venue

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 15.0) -> T:
    """Run a client coroutine to completion, failing instead of hanging after ``timeout``."""
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(bounded())


async def send(ws: ClientConnection, msg: Dict[str, Any]) -> None:
    await ws.send(orjson.dumps(msg).decode())


async def recv(ws: ClientConnection, timeout: float = 5.0) -> Dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def drain(ws: ClientConnection) -> List[Any]:
    """Every message until the server closes the connection, decoded."""
    messages = []
    try:
        async for raw in ws:
            messages.append(orjson.loads(raw))
    except ConnectionClosed:
        pass
    return messages


def read_dir(path: Path) -> Dict[str, List[dict]]:
    """The records of each ``*.jsonl`` output file in ``path``, by file name."""
    return {f.name: [orjson.loads(line) for line in f.read_bytes().splitlines()]
            for f in sorted(path.glob("*.jsonl"))}


def comparable(files: Dict[str, List[dict]], drop: Iterable[str]) -> Dict[str, List[dict]]:
    """``files`` without the fields that legitimately differ between two runs."""
    dropped = set(drop)
    return {name: [{k: v for k, v in r.items() if k not in dropped} for r in recs]
            for name, recs in files.items()}


def valid_runs(recs: Sequence[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    """The summaries of each valid run of a book, checking on the way that a
    summary only ever follows a ``synced`` status, never an ``invalid`` one
    (other records, and warnings that leave the book as it is, are skipped)."""
    runs: List[List[Dict[str, Any]]] = []
    valid = False
    for r in recs:
        if r["type"] == "status" and r["state"] in ("synced", "invalid"):
            valid = r["state"] == "synced"
            if valid:
                runs.append([])
        elif r["type"] == "summary":
            assert valid, f"summary emitted while the book was invalid: {r}"
            runs[-1].append(r)
    return runs


def websocket_source(venue: str, products: List[str], url: str,
                     settings: Dict[str, Any] | None = None, per_connection: int = 0,
                     **options: Any) -> WebsocketSource:
    """A websocket source for one venue's products, planned as the flow plans it."""
    spec = get_venue(venue)
    run = VenueRun(spec, settings or {}, url, tuple(products),
                   per_connection or spec.limits.products_per_connection)
    return WebsocketSource(lambda workers: plan_connections([run], workers),
                           resync=options.pop("resync", ResyncRequests()),
                           registry=options.pop("registry", Registry()), **options)


def crossing(product: str, update: int,
             connection: Optional[int] = None) -> Callable[[str, int], Any]:
    """A simulator ``frame_filters`` hook that adds, to Coinbase ``product``'s
    ``update``-th book update, a bid far above every ask: the book crosses although
    every sequence check passes. ``connection``: only on that connection number
    (None: on every Coinbase connection, counting the product's updates across them)."""
    seen = [0]

    async def cross(frame: Any) -> Sequence[Any]:
        if frame.product != product or frame.kind != "book":
            return [frame]
        seen[0] += 1
        if seen[0] != update:
            return [frame]
        msg = orjson.loads(orjson.dumps(frame.msg))
        event = msg["events"][0]
        event["updates"].append({"side": "bid", "event_time": event["updates"][0]["event_time"],
                                 "price_level": "9999999", "new_quantity": "0.5"})
        frame.msg = msg
        return [frame]

    return lambda venue, number: cross if venue == "coinbase" and connection in (None, number) \
        else None

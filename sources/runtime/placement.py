"""Which worker opens which connection, and the routing keys that keep each book there.

Bytewax sends a keyed item to worker ``hash(key) % workers``, where the hash is
Rust's ``DefaultHasher`` (SipHash-1-3 with both keys zero) over the key's UTF-8
bytes followed by one ``0xFF`` byte (bytewax-notes §11; pinned by bytewax==0.21.1
and checked against a real 2-process run in the tests). Its source partitions are
placed by its own round-robin, so left alone a product's socket and its book sit
in different processes about half the time: every event is then pickled across
(36.6 µs per event), and a crossed book cannot ask its source to resubscribe.

lobstream instead plans the placement itself:

1. **Balance**: connections are assigned to workers by expected load (largest
   first, each to the least loaded worker), so two busy products land on two
   workers instead of wherever their names happen to hash.
2. **Co-locate**: each worker opens only its own connections (the source is a
   ``DynamicSource``, which learns its worker index), and each product gets a
   routing key that Bytewax's hash sends to that same worker: ``venue:product``
   if it already does, else ``venue:product#n`` for the smallest ``n`` that does.
   Records keep ``venue`` and ``product`` as they are; only the key differs.

Everything here is a pure function of the configuration and the worker count, so
every worker of every process computes the same plan without talking to the
others. Products that appear later (a new expiry) go to ``hash(venue:product)``'s
own worker, so no existing book ever moves.
"""

from __future__ import annotations

import heapq
import struct
from typing import (TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple)

if TYPE_CHECKING:
    from sources.venues.base import Venue

_MASK = 0xFFFFFFFFFFFFFFFF


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _sipround(v0: int, v1: int, v2: int, v3: int) -> Tuple[int, int, int, int]:
    """One SipRound over the four state words."""
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    return v0, v1, _rotl(v2, 32), v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 of ``data`` with the key (0, 0), as Rust's ``DefaultHasher``."""
    v0, v1, v2, v3 = (0x736F6D6570736575, 0x646F72616E646F6D,
                      0x6C7967656E657261, 0x7465646279746573)
    n = len(data)
    tail = n & ~7
    words = struct.unpack_from(f"<{tail // 8}Q", data) if tail else ()
    last = int.from_bytes(data[tail:], "little") | ((n & 0xFF) << 56)
    for m in (*words, last):
        v3 ^= m
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)  # one compression round (the "1")
        v0 ^= m
    v2 ^= 0xFF
    for _ in range(3):  # three finalisation rounds (the "3")
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax routes the stateful key ``key`` to."""
    return siphash13(key.encode("utf-8") + b"\xff") % workers


def routing_key(venue: str, product: str, worker: int, workers: int) -> str:
    """A key for ``venue:product`` that Bytewax routes to ``worker``."""
    base = f"{venue}:{product}"
    if workers <= 1 or worker_of(base, workers) == worker:
        return base
    n = 1
    while True:  # each try hits with probability 1/workers: ~workers tries expected
        key = f"{base}#{n}"
        if worker_of(key, workers) == worker:
            return key
        n += 1


def home_worker(venue: str, product: str, workers: int) -> int:
    """Where a product that joins a running flow lives: its plain key's worker."""
    return worker_of(f"{venue}:{product}", workers)


class Unit(NamedTuple):
    """Something that must live on one worker (a connection, a replayed stream),
    with its expected load in any consistent unit."""

    name: str
    load: float


def assign(units: Iterable[Unit], workers: int) -> Dict[str, int]:
    """Spread ``units`` over ``workers`` by load: heaviest first, each to the
    currently least loaded worker (ties to the lowest index). Deterministic."""
    heap: List[Tuple[float, int]] = [(0.0, w) for w in range(workers)]
    plan: Dict[str, int] = {}
    for unit in sorted(units, key=lambda u: (-u.load, u.name)):
        load, worker = heapq.heappop(heap)
        plan[unit.name] = worker
        heapq.heappush(heap, (load + unit.load, worker))
    return plan


def chunks(items: Sequence[str], size: int) -> List[List[str]]:
    """``items`` in groups of at most ``size``, in order."""
    return [list(items[i:i + size]) for i in range(0, len(items), max(1, size))]


class VenueRun(NamedTuple):
    """What to follow on one venue: its home, validated settings, websocket and
    REST URLs, products, and how many products one connection may carry."""

    venue: "Venue"
    settings: Mapping[str, Any]
    url: str
    products: Tuple[str, ...]
    products_per_connection: int
    rest_url: str = ""


class ConnectionPlan(NamedTuple):
    """One connection: which worker opens it, its stream name (as recorded in
    captures), its products and their routing keys."""

    venue: "Venue"
    settings: Mapping[str, Any]
    url: str
    stream: str
    products: Tuple[str, ...]
    worker: int
    keys: Mapping[str, str]
    rest_url: str = ""
    #: The most products this connection may carry (products that join later fill it).
    capacity: int = 1


def stream_name(venue: str, products: Sequence[str]) -> str:
    """``venue:PRODUCT`` for a one-product connection, ``venue:FIRST+N`` for a group
    (the first product and how many others share it)."""
    return f"{venue}:{products[0]}" + (f"+{len(products) - 1}" if len(products) > 1 else "")


def plan_connections(runs: Iterable[VenueRun], workers: int,
                     sockets_per_worker: Optional[int] = None) -> List[ConnectionPlan]:
    """Every connection of the flow, each on its worker.

    Products are balanced over workers first, then grouped per worker into
    connections of at most ``products_per_connection``; the group size grows
    where needed to respect the venue's connection cap (across all workers) and
    ``sockets_per_worker`` (the open-file budget)."""
    plans: List[ConnectionPlan] = []
    for run in runs:
        venue = run.venue
        products = sorted(dict.fromkeys(run.products))
        if not products:
            continue
        owner = assign([Unit(p, 1.0) for p in products], workers)
        per_worker = [[p for p in products if owner[p] == w] for w in range(workers)]
        size = max(1, min(run.products_per_connection, venue.limits.max_products_per_connection))
        cap = venue.limits.max_connections
        while size < venue.limits.max_products_per_connection:
            counts = [-(-len(group) // size) for group in per_worker]
            if (cap is None or sum(counts) <= cap) and \
                    (sockets_per_worker is None or max(counts) <= sockets_per_worker):
                break
            size += 1
        rest = run.rest_url or venue.rest_url
        for worker, group in enumerate(per_worker):
            for chunk in chunks(group, size):
                keys = {p: routing_key(venue.name, p, worker, workers) for p in chunk}
                plans.append(ConnectionPlan(venue, run.settings, run.url,
                                            stream_name(venue.name, chunk), tuple(chunk),
                                            worker, keys, rest, size))
    return plans

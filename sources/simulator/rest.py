"""REST next to the websockets: the venues' HTTP GETs, answered on the same port.

Real venues have REST APIs beside their websocket feeds (instrument lists, book
snapshots); a client's REST base URL points at ``http://HOST:PORT/<prefix>``
and the rest of the path is the venue's own. Each venue module declares its
:class:`Route` table; the server finds the venue by prefix (or by an alias such
as Deribit's own ``/api/v2``), charges the request's weight where the venue
has a budget (:class:`~sources.simulator.limits.WeightBudget`), applies REST
faults, and calls the handler. A handler is a function of the
:class:`RestRequest` alone (the live state it may read, such as the books
Binance cuts snapshots from, comes in it), so it can be tested without a
server; it returns a :class:`RestReply`, never raises for bad input (the
venue's error shape is a reply like any other).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import orjson

from sources.simulator.universe import Universe


#: How many book updates back a stale snapshot may be (the history a venue keeps
#: for it is bounded by the deepest ``stale_snapshot`` fault planned).
LAG_MAX = 1000


class RestRequest(NamedTuple):
    """One GET: ``path`` below the venue's prefix, the decoded ``query``
    (name -> values), the route's ``params``, server time ``now`` in seconds,
    the venue's instruments, its live ``shared`` state (see
    :meth:`~sources.simulator.exchanges.base.SimulatedExchange.shared_state`) and
    ``lag``: how many book updates behind the reply must be (a ``stale_snapshot``
    fault; 0 for the current book)."""

    path: str
    query: Dict[str, List[str]]
    params: Dict[str, str]
    now: float
    universe: Universe
    shared: Any = None
    lag: int = 0

    def one(self, name: str) -> Optional[str]:
        """The last value given for a query parameter, or None."""
        values = self.query.get(name)
        return values[-1] if values else None


class RestReply(NamedTuple):
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Tuple[Tuple[str, str], ...] = ()


def json_reply(obj: Any, status: int = 200, headers: Tuple[Tuple[str, str], ...] = ()) -> RestReply:
    return RestReply(status, orjson.dumps(obj), "application/json", headers)


def text_reply(status: int, text: str) -> RestReply:
    return RestReply(status, text.encode(), "text/plain; charset=utf-8")


Handler = Callable[[RestRequest], RestReply]


class Route(NamedTuple):
    """``pattern`` is a path whose ``{name}`` segments match any one segment.
    ``weight`` says what a request costs against the venue's REST budget (None:
    nothing); ``snapshots``: the route serves book snapshots, which a
    ``stale_snapshot`` fault can age."""

    pattern: str
    handler: Handler
    weight: Optional[Callable[[RestRequest], int]] = None
    snapshots: bool = False

    def match(self, path: str) -> Optional[Dict[str, str]]:
        want, got = self.pattern.strip("/").split("/"), path.strip("/").split("/")
        if len(want) != len(got):
            return None
        params = {}
        for pattern, segment in zip(want, got):
            if pattern.startswith("{") and pattern.endswith("}") and segment:
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return params


def find_route(routes: Sequence[Route], path: str) -> Optional[Tuple[Route, Dict[str, str]]]:
    for candidate in routes:
        params = candidate.match(path)
        if params is not None:
            return candidate, params
    return None

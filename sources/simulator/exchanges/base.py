"""The contract between the generic simulator and one simulated venue.

The server, the recording loader, the fault engine and the instrument universe
know venues only through :class:`SimulatedExchange`. A venue module holds
everything about one venue (its websocket session and streams, how its frames
are recognised in a capture, its fault edits, its instrument lists and REST
routes) and ends with one subclass declaring it; the registry
(:mod:`sources.simulator.exchanges`) lists one instance per venue. Adding a venue
is one module plus one registry line.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Dict, Hashable, List, Optional, Sequence, Tuple,
                    Type)

from sources.simulator.clock import ExchangeClock
from sources.simulator.limits import Limits, WeightVerdict
from sources.simulator.recording import Recording
from sources.simulator.rest import RestReply, Route, json_reply
from sources.simulator.universe import Record, ReferenceList

if TYPE_CHECKING:
    from sources.simulator.session import Session

#: ``(channel, product, payload)``: one servable piece of a recorded frame.
Indexed = Tuple[str, str, Dict[str, Any]]


class SimulatedExchange:
    """One venue's fixed facts (class attributes) and venue-specific behaviour.

    Methods must not raise on odd recorded data: a capture is outside input.
    Defaults suit a venue without the feature (no reference lists, no names to
    build instruments from).
    """

    #: lobstream's venue name, as in fault scopes and the send log.
    venue: str = ""
    session: Type["Session"]
    #: Websocket paths (Deribit also answers on its own ``/ws/api/v2``).
    ws_paths: Tuple[str, ...] = ()
    #: Websocket paths whose every sub-path is this venue's too (Binance's raw
    #: streams, ``/ws/<stream>``).
    ws_prefixes: Tuple[str, ...] = ()
    #: REST base: ``http://HOST:PORT`` + this + the venue's own path.
    rest_prefix: str = ""
    #: Path prefixes the venue's REST API also answers without ``rest_prefix``
    #: (its real paths, e.g. Deribit's ``/api/v2/``); none may overlap another's.
    rest_aliases: Tuple[str, ...] = ()
    routes: Tuple[Route, ...] = ()
    #: The recording channel holding books: pacing and the clock start at its
    #: first frame, and cloned instruments copy its products.
    book_channel: str = "book"
    limits: Limits = Limits()
    #: The fields of one of the venue's API keys (``--api-key VENUE:F1:F2...``);
    #: none: the venue has no authentication.
    key_fields: Tuple[str, ...] = ()

    # --- recordings -------------------------------------------------------------

    def index(self, msg: Dict[str, Any]) -> Optional[List[Indexed]]:
        """Split a received frame into what can be served: None if the frame is
        not this venue's (by shape, so any capture can be served), [] if it is
        but holds nothing served (replies, heartbeats)."""
        raise NotImplementedError

    def envelope_time(self, msg: Dict[str, Any]) -> Any:
        """The time a received frame's envelope was stamped with when the venue
        stamps messages as it sends them (Coinbase Advanced Trade ``timestamp``),
        kept with each piece so the simulator sends it again; None otherwise."""
        return None

    def index_rest(self, url: str, body: Any) -> Optional[List[Indexed]]:
        """Split a recorded REST reply (a ``rest`` capture frame) into what can be
        served, as :meth:`index` does for received frames (Binance's depth
        snapshots); None if it is not this venue's."""
        return None

    def rename(self, channel: str, payload: Dict[str, Any], name: str) -> Dict[str, Any]:
        """A copy of a recorded payload that names instrument ``name`` (cloned books)."""
        raise NotImplementedError

    def book_start(self, recording: Recording) -> Optional[float]:
        return recording.start(self.venue, self.book_channel)

    def check_api_key(self, key: Tuple[str, ...]) -> Optional[str]:
        """Why ``key`` cannot be one of this venue's API keys, or None."""
        if not self.key_fields:
            return f"{self.venue} has no authentication"
        if len(key) != len(self.key_fields) or not all(key):
            return f"a {self.venue} API key is {':'.join(self.key_fields)}"
        return None

    # --- connections ------------------------------------------------------------

    def handshake_error(self, path: str, query: str) -> Optional[str]:
        """Why a websocket handshake on one of the venue's paths is refused with
        HTTP 400 (Binance: a bad stream name in ``?streams=``), or None."""
        return None

    def shared_state(self, recording: Recording, clock: ExchangeClock, limits: Limits,
                     history: int, reference_dir: Optional[Path]) -> Any:
        """The live state one server's sessions and REST handlers share (Binance:
        the books its depth snapshots are cut from), made at start. ``history``
        is how many book updates back a ``stale_snapshot`` fault may reach."""
        return None

    # --- faults -----------------------------------------------------------------

    def size_slots(self, msg: Dict[str, Any]) -> List[Tuple[Any, Any]]:
        """``(container, key)`` of every book level's size in an outgoing message."""
        raise NotImplementedError

    def unknown_message(self, name: str, product: Optional[str]) -> Dict[str, Any]:
        """A well-formed message of a type the venue does not have."""
        raise NotImplementedError

    def break_chain(self, msg: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """A copy of an outgoing book message whose link to its predecessor is
        broken while its data stays intact (Binance ``pu``/``U``, Deribit
        ``prev_change_id``), or None if it has no such link."""
        return None

    def rest_error(self, status: int) -> RestReply:
        """The venue's body for an HTTP error a REST fault injects."""
        return json_reply({"message": HTTPStatus(status).phrase}, status)

    def weight_headers(self, used: int) -> Tuple[Tuple[str, str], ...]:
        """Headers reporting the REST weight used in the current window."""
        return ()

    def over_budget(self, verdict: WeightVerdict, budget: int) -> RestReply:
        """The reply to a request over the REST weight budget (429) or from a
        banned client (418); ``Retry-After`` is added by the server."""
        return self.rest_error(verdict.status)

    # --- instruments ------------------------------------------------------------

    def reference_lists(self, directory: Path) -> List[ReferenceList]:
        """The venue's recorded instrument lists in ``directory``."""
        return []

    def record_name(self, record: Record) -> str:
        raise NotImplementedError

    def shift_record(self, record: Record, clock: ExchangeClock) -> Record:
        """A copy of a list record with its times moved by ``clock``."""
        return record

    def build_record(self, name: str, listed: Sequence[Tuple[str, Record]],
                     clock: ExchangeClock) -> Optional[Tuple[str, Record]]:
        """``(group, record)`` for an instrument no list holds, from its name and
        the listed ones (times on ``clock``), or None if the name does not say."""
        return None

    def family(self, name: str) -> Tuple[Hashable, ...]:
        """What makes instruments alike, most specific first: a cloned book is
        taken from the closest recorded family."""
        return ()

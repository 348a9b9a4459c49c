"""The venues a capture can hold, and how a recorder's file tells which one it is.

:data:`REPLAYABLE_VENUES` is the one list of venues lobstream's flow can replay;
the converter refuses anything else at conversion time rather than writing a
capture that fails later. The rest are recognisers used by the converter's input
readers: host names, recorder labels, frame shapes, and Binance's REST depth
endpoints (a converted Binance snapshot becomes a ``rest`` frame with its URL).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Optional, Tuple

from sources.venues import VENUE_NAMES, get_venue

#: The venue registry is the one list; a venue whose books come from REST
#: snapshots is a Binance market (their captures inline the snapshot).
REPLAYABLE_VENUES = VENUE_NAMES
BINANCE_VENUES = tuple(v for v in VENUE_NAMES if get_venue(v).rest_snapshots)

#: Websocket and REST hosts, most specific first ("fstream.binance.com" before
#: "stream.binance.com"). The Coinbase Exchange (formerly Pro) host tells it from
#: Advanced Trade, which recorders both label "COINBASE".
_HOSTS: Tuple[Tuple[str, str], ...] = (
    ("ws-feed.exchange.coinbase.com", "coinbase_exchange"),
    ("ws-feed.pro.coinbase.com", "coinbase_exchange"),
    ("api.pro.coinbase.com", "coinbase_exchange"),
    ("api.exchange.coinbase.com", "coinbase_exchange"),
    ("advanced-trade-ws.coinbase.com", "coinbase"),
    ("api.coinbase.com", "coinbase"),
    ("deribit.com", "deribit"),
    ("fstream.binance.com", "binance_usdm"),
    ("fapi.binance.com", "binance_usdm"),
    ("dstream.binance.com", "binance_coinm"),
    ("dapi.binance.com", "binance_coinm"),
    ("binance.com", "binance"),
    ("binance.vision", "binance"),
)

#: Recorders' exchange labels (cryptofeed ids; file names start with them).
_LABELS: Tuple[Tuple[str, str], ...] = (
    ("binance_futures", "binance_usdm"),
    ("binance_delivery", "binance_coinm"),
    ("binance_usdm", "binance_usdm"),
    ("binance_coinm", "binance_coinm"),
    ("coinbase_exchange", "coinbase_exchange"),
    ("binance", "binance"),
    ("coinbase", "coinbase"),
    ("deribit", "deribit"),
)

#: COIN-M symbols: BTCUSD_PERP, ETHUSD_240927 (quarterly).
_COINM_SYMBOL = re.compile(r"^[A-Z0-9]+USD_(PERP|\d{6})$")


def venue_of_host(text: str) -> Optional[str]:
    """The venue whose host appears in ``text`` (a URL), if any."""
    low = text.lower()
    return next((v for host, v in _HOSTS if host in low), None)


def venue_of_label(text: str) -> Optional[str]:
    """The venue a recorder label or file name names (``BINANCE_FUTURES-1a2b.0``)."""
    low = text.lower()
    return next((v for label, v in _LABELS if label in low), None)


def venue_of_frame(msg: Any) -> Optional[str]:
    """Recognise a venue family from one decoded frame's shape (for dumps with no
    other clue). Binance frames give "binance"; :func:`binance_market` tells
    spot from futures."""
    if not isinstance(msg, dict):
        return None
    if "jsonrpc" in msg:
        return "deribit"
    if "stream" in msg or "e" in msg or "lastUpdateId" in msg:
        return "binance"
    if "channel" in msg:  # Advanced Trade wraps everything in a channel envelope
        return "coinbase"
    if "type" in msg:
        return "coinbase_exchange"
    return None


def is_coinm_symbol(symbol: str) -> bool:
    return bool(_COINM_SYMBOL.match(symbol.upper()))


def binance_market(msgs: Iterable[Any]) -> Optional[str]:
    """Spot, USD-M or COIN-M from frames' content, or None if they do not say.

    The first depth diff decides: futures diffs carry ``pu`` (the previous diff's
    ``u``), spot diffs do not; a futures symbol shaped like ``ETHUSD_PERP`` is
    COIN-M. Without a diff, a depth snapshot decides (COIN-M's carries ``pair``,
    futures' carry ``E``), then any symbol shaped like COIN-M's.
    """
    snapshot: Optional[Dict[str, Any]] = None
    coinm_symbol = False
    for msg in msgs:
        data = msg.get("data", msg) if isinstance(msg, dict) else None
        if not isinstance(data, dict):
            continue
        symbol = data.get("s") if isinstance(data.get("s"), str) else data.get("symbol")
        if isinstance(symbol, str) and is_coinm_symbol(symbol):
            coinm_symbol = True
        if data.get("e") == "depthUpdate":
            if "pu" not in data:
                return "binance"
            return "binance_coinm" if coinm_symbol else "binance_usdm"
        if "lastUpdateId" in data and snapshot is None:
            snapshot = data
    if snapshot is not None:
        if "pair" in snapshot or coinm_symbol:
            return "binance_coinm"
        return "binance_usdm" if "E" in snapshot else "binance"
    return "binance_coinm" if coinm_symbol else None


def binance_depth_url(venue: str, symbol: str, levels: int) -> str:
    """The REST request that returns a depth snapshot of ``levels`` levels a side,
    as the venue's home builds it: its default REST host and the smallest
    ``snapshot_limit`` it offers that covers ``levels`` (the recorder's request is
    not in the file; 1,000 levels a side, as in every bundled snapshot, gives
    ``limit=1000``)."""
    spec = get_venue(venue)
    assert spec.snapshot_request is not None
    limits = spec.setting("snapshot_limit").choices
    limit = next((n for n in limits if n >= levels), limits[-1])
    url, _ = spec.snapshot_request(spec.rest_url, symbol.upper(),
                                   {"snapshot_limit": limit})
    return url

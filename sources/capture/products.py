"""Which instruments a frame is about, for the converter's ``--products`` filter.

Frames that name no instrument (heartbeats, subscribe acknowledgements without
channels, instrument lists) are connection-level and always kept. REST frames are
judged by their request URL (``symbol=``, ``instrument_name=``, ``product_id=``)
because a depth snapshot's body does not name its symbol.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Set
from urllib.parse import parse_qs, urlsplit

from sources.capture.venues import BINANCE_VENUES

_QUERY_KEYS = ("symbol", "instrument_name", "product_id")


def _instrument_of_channel(channel: Any) -> Set[str]:
    """Deribit channels look like ``book.BTC-PERPETUAL.raw``; instrument names have a dash."""
    if not isinstance(channel, str):
        return set()
    return {part for part in channel.split(".") if "-" in part}


def _binance_symbol(name: Any) -> Set[str]:
    return {name.split("@", 1)[0].upper()} if isinstance(name, str) and name else set()


def _strings(values: Any) -> Iterable[Any]:
    return values if isinstance(values, list) else ()


def products_named(venue: str, msg: Any, url: Optional[str] = None) -> Set[str]:
    """The instruments a frame (decoded ``msg``; ``url`` for REST) is about."""
    found: Set[str] = set()
    if url:
        query = parse_qs(urlsplit(url).query)
        found |= {v for key in _QUERY_KEYS for v in query.get(key, ())}
    if not isinstance(msg, dict):
        return found
    if venue == "deribit":
        params = msg.get("params")
        params = params if isinstance(params, dict) else {}
        found |= _instrument_of_channel(params.get("channel"))
        for ch in _strings(params.get("channels")):
            found |= _instrument_of_channel(ch)
        for ch in _strings(msg.get("result")):
            found |= _instrument_of_channel(ch)
        data = params.get("data")
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and isinstance(item.get("instrument_name"), str):
                found.add(item["instrument_name"])
    elif venue == "coinbase_exchange":
        if isinstance(msg.get("product_id"), str):
            found.add(msg["product_id"])
        found |= {p for p in _strings(msg.get("product_ids")) if isinstance(p, str)}
    elif venue in BINANCE_VENUES:
        found |= _binance_symbol(msg.get("stream"))
        for name in _strings(msg.get("params")):
            found |= _binance_symbol(name)
        data = msg.get("data", msg)
        if isinstance(data, dict) and isinstance(data.get("s"), str):
            found.add(data["s"].upper())
    return found


def normalise(venue: str, product: str) -> str:
    """Binance symbols have no separator (BTC-USDT -> BTCUSDT); others are exact."""
    if venue in BINANCE_VENUES:
        return product.upper().replace("-", "").replace("/", "")
    return product


def keep(venue: str, wanted: Set[str], msg: Any, url: Optional[str] = None) -> bool:
    """Whether a frame survives ``--products wanted`` (already normalised)."""
    named = {normalise(venue, p) for p in products_named(venue, msg, url)}
    return not named or bool(named & wanted)

"""Where each venue lists its instruments, and pure parsers of those REST replies.

Each venue has one :class:`InstrumentsApi` table (REST path, query, request weight,
rate limit, the kinds it lists, and the wire field behind each
:class:`~sources.instruments.model.Instrument` attribute) next to its
``parse_<venue>(body: bytes) -> (instruments, skipped)``. The parsers never touch
the network: the fetcher, the tests and the simulator feed them the same bytes.

An entry that does not validate is skipped and counted by kind in the returned
:class:`~sources.instruments.fields.Skipped`; a body that is not a list at all
(not JSON, an error reply) raises :class:`~sources.instruments.fields.BodyError`.
Every symbol must also pass the venue's name syntax (its home's ``check_product``), and a symbol
listed twice keeps its first entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import orjson

from sources.instruments.fields import (CURRENCY_CODE, BodyError, EntryError, Skipped, choice,
                                        code, epoch_ms, field, flag, number, optional_number,
                                        text)
from sources.instruments.model import (BASE, CALL, CONTRACTS, FUTURE, OPTION, PERPETUAL, PUT,
                                       QUOTE, SPOT, Instrument)
from sources.transport.ratelimit import RateLimit
from sources.venues import get_venue

Parsed = Tuple[List[Instrument], Skipped]
Entry = Dict[str, Any]


@dataclass(frozen=True)
class InstrumentsApi:
    """One venue's instrument list: how to ask for it and how to read it.

    ``queries(names, currencies)`` gives one query per request: one for most
    venues, one per currency for Deribit. ``weight`` is what one request costs against ``rate``. ``fields``
    maps each Instrument attribute to the wire field it comes from.
    """

    venue: str
    base_url: str
    path: str
    queries: Callable[[Sequence[str], Optional[Sequence[str]]], Tuple[Dict[str, str], ...]]
    weight: int
    rate: RateLimit
    kinds: Tuple[str, ...]
    #: Whether the list carries a 24 h volume (needed by ``by = "volume"`` rules).
    volume: bool
    fields: Mapping[str, str]
    parse: Callable[[bytes], Parsed]


def _decode(venue: str, body: bytes) -> Any:
    """The JSON document. orjson refuses a whole document for one number out of
    double range (``1e400``) or a ``NaN`` literal; the standard library reads those
    (as inf/nan), so the per-entry checks skip just the entry that holds one."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as ex:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise BodyError(f"{venue}: instrument list is not JSON ({ex})") from None


def _entries(venue: str, doc: Any, key: Optional[str], error_keys: Tuple[str, ...]) -> List[Any]:
    """The list of entries under ``key`` (the document itself if None)."""
    if key is None:
        entries = doc
    else:
        entries = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(entries, list):
        return entries
    if isinstance(doc, dict) and any(k in doc for k in error_keys):
        detail = " ".join(str(doc.get(k)) for k in error_keys if k in doc)
        raise BodyError(f"{venue}: error reply instead of an instrument list: {detail[:200]}")
    raise BodyError(f"{venue}: expected a list{f' under {key!r}' if key else ''}, got "
                    f"{type(doc if entries is None else entries).__name__}")


def _collect(venue: str, entries: List[Any], symbol_field: str,
             build: Callable[[Entry, str], Instrument], skipped: Skipped) -> List[Instrument]:
    """Build an instrument from each entry; skip and count the ones that fail."""
    out: List[Instrument] = []
    seen = set()
    for entry in entries:
        label = repr(entry.get(symbol_field))[:40] if isinstance(entry, dict) else "?"
        try:
            if not isinstance(entry, dict):
                raise EntryError("not_object", f"entry is a {type(entry).__name__}")
            symbol = text(entry, symbol_field)
            problem = get_venue(venue).check_product(symbol)
            if problem:
                raise EntryError("bad_name", problem)
            if symbol in seen:
                raise EntryError("duplicate", "listed twice; the first entry is kept")
            instrument = build(entry, symbol)
        except EntryError as ex:
            skipped.add(ex.kind, f"{label}: {ex}")
            continue
        except ValueError as ex:  # an Instrument invariant: fields that contradict each other
            skipped.add("invalid", f"{label}: {ex}")
            continue
        seen.add(symbol)
        out.append(instrument)
    return out


# --- Coinbase Advanced Trade -------------------------------------------------------

_COINBASE_FIELDS = {
    "symbol": "product_id", "kind": "product_type", "base": "base_currency_id",
    "quote": "quote_currency_id", "tick_size": "price_increment",
    "size_increment": "base_increment", "min_size": "base_min_size",
    "active": "status", "volume_24h": "volume_24h", "price": "price",
}
_COINBASE_KINDS = {"SPOT": SPOT}


def parse_coinbase(body: bytes) -> Parsed:
    """``GET /api/v3/brokerage/market/products`` (public; Advanced Trade).

    ``settle`` is the quote currency (spot). ``active``: ``status`` is ``online``
    and neither ``trading_disabled`` nor ``is_disabled`` is true. ``volume_24h``
    is ``volume_24h`` (base units) times ``price``, i.e. in the quote currency;
    None where either is empty. Futures (``product_type`` ``FUTURE``) are not read.
    A reply that says more pages follow is counted as ``more_pages``.
    """
    f = _COINBASE_FIELDS
    doc = _decode("coinbase", body)
    entries = _entries("coinbase", doc, "products", ("error", "message"))
    skipped = Skipped()
    pagination = doc.get("pagination")
    if isinstance(pagination, dict) and pagination.get("has_next") is True:
        skipped.add("more_pages", f"the reply holds {len(entries)} products and says more follow")

    def build(e: Entry, symbol: str) -> Instrument:
        kind = choice(e, f["kind"], _COINBASE_KINDS)
        volume, price = optional_number(e, f["volume_24h"]), optional_number(e, f["price"])
        quote = code(e, f["quote"])
        return Instrument(
            "coinbase", symbol, kind, code(e, f["base"]), quote, quote,
            number(e, f["tick_size"]), number(e, f["size_increment"]), number(e, f["min_size"]),
            active=(text(e, f["active"]) == "online" and not flag(e, "trading_disabled", False)
                    and not flag(e, "is_disabled", False)),
            volume_24h=volume * price if volume is not None and price is not None else None)

    return _collect("coinbase", entries, f["symbol"], build, skipped), skipped


# --- Coinbase Exchange -------------------------------------------------------------

_COINBASE_EXCHANGE_FIELDS = {
    "symbol": "id", "base": "base_currency", "quote": "quote_currency",
    "tick_size": "quote_increment", "size_increment": "base_increment",
    "min_size": "base_min_size", "active": "status",
}


def parse_coinbase_exchange(body: bytes) -> Parsed:
    """``GET /products`` (Coinbase Exchange, formerly Pro): a JSON array, all spot.

    ``settle`` is the quote currency. ``min_size`` is ``base_min_size``, or
    ``base_increment`` where the reply has no minimum (newer replies dropped it).
    ``active``: ``status`` is ``online`` and ``trading_disabled`` is not true. The
    list carries no volume.
    """
    f = _COINBASE_EXCHANGE_FIELDS
    entries = _entries("coinbase_exchange", _decode("coinbase_exchange", body), None, ("message",))
    skipped = Skipped()

    def build(e: Entry, symbol: str) -> Instrument:
        quote = code(e, f["quote"])
        step = number(e, f["size_increment"])
        return Instrument(
            "coinbase_exchange", symbol, SPOT, code(e, f["base"]), quote, quote,
            number(e, f["tick_size"]), step,
            number(e, f["min_size"]) if f["min_size"] in e else step,
            active=text(e, f["active"]) == "online" and not flag(e, "trading_disabled", False))

    return _collect("coinbase_exchange", entries, f["symbol"], build, skipped), skipped


# --- Deribit -----------------------------------------------------------------------

_DERIBIT_FIELDS = {
    "symbol": "instrument_name", "kind": "kind", "base": "base_currency",
    "quote": "quote_currency", "settle": "settlement_currency", "tick_size": "tick_size",
    "size_increment": "min_trade_amount", "min_size": "min_trade_amount",
    "contract_size": "contract_size", "inverse": "future_type", "expiry_ms": "expiration_timestamp",
    "period": "settlement_period", "strike": "strike", "option_type": "option_type",
    "active": "is_active",
}
_DERIBIT_KINDS = {"future": FUTURE, "option": OPTION, "spot": SPOT}
_DERIBIT_FUTURE_TYPES = {"linear": False, "reversed": True}
_DERIBIT_OPTION_TYPES = {"call": CALL, "put": PUT}


def parse_deribit(body: bytes) -> Parsed:
    """``GET /api/v2/public/get_instruments?currency=X&expired=false``: JSON-RPC
    reply, entries under ``result``.

    ``kind`` ``future`` with ``settlement_period`` ``perpetual`` is a perpetual
    (its ``expiration_timestamp``, year 3000, is dropped). ``settle`` is
    ``settlement_currency``, or ``base_currency`` in older replies that lack it.
    A future is inverse when ``future_type`` is ``reversed``, or, in older replies
    without ``future_type``, when it settles in another currency than its quote
    (BTC-PERPETUAL: quote USD, settled in BTC). Inverse ``amount`` is in USD
    (size unit ``quote``, ``contract_size`` USD per contract); options, linear
    (``_USDC``) and spot amounts are in the base currency. Deribit has no separate
    size step: amounts are multiples of ``min_trade_amount``, which gives both
    ``size_increment`` and ``min_size``. ``tick_size`` is the base tick (options
    refine it by price in ``tick_size_steps``, not read). ``active`` is
    ``is_active``. No volume. Combos (``future_combo``, ``option_combo``) are not read.
    """
    f = _DERIBIT_FIELDS
    entries = _entries("deribit", _decode("deribit", body), "result", ("error",))
    skipped = Skipped()

    def build(e: Entry, symbol: str) -> Instrument:
        kind = choice(e, f["kind"], _DERIBIT_KINDS)
        base, quote = code(e, f["base"]), code(e, f["quote"])
        settle = code(e, f["settle"]) if f["settle"] in e else base
        inverse, expiry, strike, option_type = False, None, None, None
        if kind == FUTURE:
            if text(e, f["period"]) == "perpetual":
                kind = PERPETUAL
            else:
                expiry = epoch_ms(e, f["expiry_ms"])
            inverse = (choice(e, f["inverse"], _DERIBIT_FUTURE_TYPES) if f["inverse"] in e
                       else settle != quote)
        elif kind == OPTION:
            expiry = epoch_ms(e, f["expiry_ms"])
            strike = number(e, f["strike"])
            option_type = choice(e, f["option_type"], _DERIBIT_OPTION_TYPES)
        step = number(e, f["size_increment"])
        return Instrument(
            "deribit", symbol, kind, base, quote, settle, number(e, f["tick_size"]), step, step,
            size_unit=QUOTE if inverse else BASE, contract_size=number(e, f["contract_size"]),
            inverse=inverse, expiry_ms=expiry, strike=strike, option_type=option_type,
            active=flag(e, f["active"]))

    return _collect("deribit", entries, f["symbol"], build, skipped), skipped


# --- Binance spot, USD-M and COIN-M futures ----------------------------------------

_BINANCE_FIELDS = {
    "symbol": "symbol", "base": "baseAsset", "quote": "quoteAsset",
    "tick_size": "PRICE_FILTER.tickSize", "size_increment": "LOT_SIZE.stepSize",
    "min_size": "LOT_SIZE.minQty", "active": "status",
}
_BINANCE_FUTURES_FIELDS = {
    **_BINANCE_FIELDS, "kind": "contractType", "settle": "marginAsset",
    "expiry_ms": "deliveryDate",
}
_BINANCE_COINM_FIELDS = {
    **_BINANCE_FUTURES_FIELDS, "active": "contractStatus", "contract_size": "contractSize",
}
_BINANCE_CONTRACT_TYPES = {
    "PERPETUAL": PERPETUAL, "PERPETUAL_DELIVERING": PERPETUAL,
    "CURRENT_QUARTER": FUTURE, "NEXT_QUARTER": FUTURE, "CURRENT_QUARTER_DELIVERING": FUTURE,
    "CURRENT_MONTH": FUTURE, "NEXT_MONTH": FUTURE,
}


def _filter(e: Entry, path: str) -> float:
    """A number from ``filters``: ``path`` is ``FILTERTYPE.field``."""
    kind, name = path.split(".")
    filters = field(e, "filters")
    if not isinstance(filters, list):
        raise EntryError("bad_text", "filters is not a list")
    for item in filters:
        if isinstance(item, dict) and item.get("filterType") == kind:
            return number(item, name)
    raise EntryError("missing", f"no {kind} filter")


def _binance(venue: str, body: bytes, f: Mapping[str, str]) -> Parsed:
    entries = _entries(venue, _decode(venue, body), "symbols", ("code", "msg"))
    skipped = Skipped()

    def build(e: Entry, symbol: str) -> Instrument:
        base, quote = code(e, f["base"]), code(e, f["quote"])
        common = (_filter(e, f["tick_size"]), _filter(e, f["size_increment"]),
                  _filter(e, f["min_size"]))
        active = text(e, f["active"]) == "TRADING"
        if "kind" not in f:
            return Instrument(venue, symbol, SPOT, base, quote, quote, *common, active=active)
        kind = choice(e, f["kind"], _BINANCE_CONTRACT_TYPES)
        expiry = epoch_ms(e, f["expiry_ms"]) if kind == FUTURE else None
        settle = code(e, f["settle"])
        if "contract_size" not in f:
            return Instrument(venue, symbol, kind, base, quote, settle, *common,
                              expiry_ms=expiry, active=active)
        return Instrument(venue, symbol, kind, base, quote, settle, *common,
                          size_unit=CONTRACTS, contract_size=number(e, f["contract_size"]),
                          inverse=True, expiry_ms=expiry, active=active)

    return _collect(venue, entries, f["symbol"], build, skipped), skipped


def parse_binance(body: bytes) -> Parsed:
    """``GET /api/v3/exchangeInfo`` (spot): entries under ``symbols``.

    ``tick_size`` is ``PRICE_FILTER.tickSize``; ``size_increment`` and ``min_size``
    are ``LOT_SIZE.stepSize`` and ``.minQty``, in the base currency. ``settle`` is
    the quote asset. ``active``: ``status`` is ``TRADING``. No volume.
    """
    return _binance("binance", body, _BINANCE_FIELDS)


def parse_binance_usdm(body: bytes) -> Parsed:
    """``GET /fapi/v1/exchangeInfo`` (USD-M futures): as spot, plus ``contractType``
    (``PERPETUAL``; ``CURRENT_QUARTER`` etc. are futures expiring at
    ``deliveryDate``), ``settle`` from ``marginAsset``. Quantities are in the base
    currency (linear contracts)."""
    return _binance("binance_usdm", body, _BINANCE_FUTURES_FIELDS)


def parse_binance_coinm(body: bytes) -> Parsed:
    """``GET /dapi/v1/exchangeInfo`` (COIN-M futures): as USD-M, but ``active`` comes
    from ``contractStatus`` and quantities are contracts of ``contractSize`` USD
    each (inverse: BTCUSD_PERP is 100 USD a contract, the others 10)."""
    return _binance("binance_coinm", body, _BINANCE_COINM_FIELDS)


# --- The tables --------------------------------------------------------------------

#: Deribit lists one currency per request. BTC and ETH hold Deribit's inverse
#: perpetuals, futures and options; USDC holds the linear ``_USDC`` perpetuals and
#: options of the other coins. Others (SOL had its own in 2022) are asked for
#: explicitly, or follow from the configured names.
DERIBIT_CURRENCIES = ("BTC", "ETH", "USDC")


def _one_request(names: Sequence[str],
                 currencies: Optional[Sequence[str]]) -> Tuple[Dict[str, str], ...]:
    if currencies is not None:
        raise ValueError("only deribit lists its instruments per currency")
    return ({},)


def deribit_queries(names: Sequence[str],
                    currencies: Optional[Sequence[str]] = None) -> Tuple[Dict[str, str], ...]:
    """One ``get_instruments`` query per currency: ``currencies`` (default
    :data:`DERIBIT_CURRENCIES`), plus the currency each of ``names`` is listed
    under (``SOL-PERPETUAL``: SOL; ``XRP_USDC-PERPETUAL``: USDC)."""
    wanted = list(DERIBIT_CURRENCIES if currencies is None else currencies)
    for name in names:
        head = name.split("-", 1)[0]
        currency = head.rsplit("_", 1)[-1]
        if currency not in wanted:
            wanted.append(currency)
    for currency in wanted:
        if not isinstance(currency, str) or not CURRENCY_CODE.fullmatch(currency):
            raise ValueError(f"deribit: currency {currency!r}: expected a code such as BTC")
    return tuple({"currency": c, "expired": "false"} for c in wanted)

APIS: Dict[str, InstrumentsApi] = {api.venue: api for api in (
    # Public market endpoints: 10 requests/s per IP documented; keep under it.
    InstrumentsApi("coinbase", get_venue("coinbase").rest_url, "/api/v3/brokerage/market/products",
                   _one_request, 1, RateLimit(8, 1.0), (SPOT,), True, _COINBASE_FIELDS,
                   parse_coinbase),
    InstrumentsApi("coinbase_exchange", get_venue("coinbase_exchange").rest_url, "/products",
                   _one_request, 1, RateLimit(8, 1.0), (SPOT,), False, _COINBASE_EXCHANGE_FIELDS,
                   parse_coinbase_exchange),
    # get_instruments has its own limit: 1 request/s sustained.
    InstrumentsApi("deribit", get_venue("deribit").rest_url, "/api/v2/public/get_instruments",
                   deribit_queries, 1,
                   RateLimit(1, 1.0), (SPOT, PERPETUAL, FUTURE, OPTION), False, _DERIBIT_FIELDS,
                   parse_deribit),
    # Binance counts weight per IP per minute: spot 6000, futures 2400; exchangeInfo
    # costs 20 on spot, 1 on futures. Budgets keep 20 % in reserve.
    InstrumentsApi("binance", get_venue("binance").rest_url, "/api/v3/exchangeInfo", _one_request, 20,
                   RateLimit(4800, 60.0, "X-MBX-USED-WEIGHT-1M"), (SPOT,), False,
                   _BINANCE_FIELDS, parse_binance),
    InstrumentsApi("binance_usdm", get_venue("binance_usdm").rest_url, "/fapi/v1/exchangeInfo", _one_request, 1,
                   RateLimit(1920, 60.0, "X-MBX-USED-WEIGHT-1M"), (PERPETUAL, FUTURE), False,
                   _BINANCE_FUTURES_FIELDS, parse_binance_usdm),
    InstrumentsApi("binance_coinm", get_venue("binance_coinm").rest_url, "/dapi/v1/exchangeInfo", _one_request, 1,
                   RateLimit(1920, 60.0, "X-MBX-USED-WEIGHT-1M"), (PERPETUAL, FUTURE), False,
                   _BINANCE_COINM_FIELDS, parse_binance_coinm),
)}


def api_for(venue: str) -> InstrumentsApi:
    """The table of ``venue``; ValueError naming the valid choices."""
    try:
        return APIS[venue]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; valid choices: {', '.join(APIS)}") from None

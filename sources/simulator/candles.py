"""The venues' REST candle endpoints, answered from the trades in the recordings.

Coinbase Advanced Trade ``/api/v3/brokerage/market/products/{product}/candles``,
Binance ``/api/v3/klines``, ``/fapi/v1/klines``, ``/dapi/v1/klines`` and Deribit
``/api/v2/public/get_tradingview_chart_data`` are served in the venues' own reply
shapes, aggregated here from the recorded trade prints (server side: nothing of
lobstream's client parsers is used). A window without trades has no candle.
The Deribit recordings hold no trades, so a Deribit instrument without any is
charted from its recorded ticker ``last_price`` with zero volume: the shape of
Deribit's own filling candles. Each venue's page limit is enforced the way the
venue does (Binance caps ``limit``, Coinbase refuses a range of more candles).

:func:`load_prints` reads the captures once; :func:`answer` maps a GET to
``(status, JSON body)``, or None for a path that is not a candle endpoint.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

import orjson

from sources.capture.format import read_capture

#: Page limits as the venues enforce them.
COINBASE_MAX, BINANCE_SPOT_MAX, BINANCE_FUTURES_MAX, DERIBIT_MAX = 350, 1000, 1500, 5000
COINBASE_GRANULARITY = {"ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900,
                        "THIRTY_MINUTE": 1800, "ONE_HOUR": 3600, "TWO_HOUR": 7200,
                        "SIX_HOUR": 21600, "ONE_DAY": 86400}
KLINE_INTERVALS = {"1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800,
                   "1h": 3600, "2h": 7200, "4h": 14400, "6h": 21600, "8h": 28800,
                   "12h": 43200, "1d": 86400}
DERIBIT_RESOLUTIONS = {"1": 60, "3": 180, "5": 300, "10": 600, "15": 900, "30": 1800,
                       "60": 3600, "120": 7200, "180": 10800, "360": 21600, "720": 43200,
                       "1D": 86400}
KLINE_PATHS = {"/api/v3/klines": "binance", "/fapi/v1/klines": "binance_usdm",
               "/dapi/v1/klines": "binance_coinm"}


class Print(NamedTuple):
    """One recorded trade: time (ms), price, size as the venue counts volume (COIN-M:
    contracts, else base), base and quote size, whether the taker bought."""

    ts: int
    price: float
    size: float
    base: float
    quote: float
    buy: bool


Prints = Dict[Tuple[str, str], List[Print]]


def _coinm_contract(symbol: str) -> float:
    """COIN-M contract size in USD, as the exchange lists it: 100 for BTC, 10 others."""
    return 100.0 if symbol.startswith("BTC") else 10.0


def load_prints(paths: Iterable[Union[str, Path]]) -> Prints:
    """Every trade print of the captures, per (venue, product), in time order (each
    trade once: Coinbase's snapshot repeats recent trades)."""
    out: Dict[Tuple[str, str], Dict[str, Print]] = defaultdict(dict)
    last: Dict[Tuple[str, str], Dict[int, float]] = defaultdict(dict)
    for path in paths:
        for frame in read_capture(path):
            msg = frame.msg
            if frame.dir != "recv" or not isinstance(msg, dict):
                continue
            for key, trade_id, p in _frame_prints(frame.venue, msg):
                out[key][trade_id] = p
            if frame.venue == "deribit":
                data = (msg.get("params") or {}).get("data")
                channel = str((msg.get("params") or {}).get("channel", ""))
                if channel.startswith("ticker.") and isinstance(data, dict) and \
                        isinstance(data.get("last_price"), (int, float)) and \
                        isinstance(data.get("timestamp"), int):
                    last[("deribit", channel.split(".")[1])][data["timestamp"]] = \
                        float(data["last_price"])
    # by time, then in arrival order: the first and last print of a window are its
    # open and close, even when several share a millisecond
    prints = {k: sorted(v.values(), key=lambda p: p.ts) for k, v in out.items()}
    for key, prices in last.items():
        if key not in prints:  # no recorded trades: chart the last prices, zero volume
            prints[key] = [Print(ts, px, 0.0, 0.0, 0.0, True)
                           for ts, px in sorted(prices.items())]
    return prints


def _frame_prints(venue: str, msg: Dict[str, Any]) -> Iterable[Tuple[Tuple[str, str], str, Print]]:
    if venue == "coinbase" and msg.get("channel") == "market_trades":
        for event in msg.get("events") or ():
            for t in event.get("trades") or ():
                ts = int(datetime.fromisoformat(t["time"]).timestamp() * 1000)
                px, size = float(t["price"]), float(t["size"])
                # market_trades names the maker's side: BUY means a seller hit a bid
                yield (venue, t["product_id"]), t["trade_id"], Print(
                    ts, px, size, size, px * size, t["side"] == "SELL")
    elif venue.startswith("binance"):
        data = msg.get("data", msg)
        if isinstance(data, dict) and data.get("e") in ("trade", "aggTrade"):
            px, qty = float(data["p"]), float(data["q"])
            if venue == "binance_coinm":
                quote = qty * _coinm_contract(data["s"])
                base = quote / px
            else:
                base, quote = qty, px * qty
            trade_id = str(data.get("t", data.get("a")))
            yield (venue, data["s"]), trade_id, Print(int(data["T"]), px, qty, base, quote,
                                                      not data["m"])
    elif venue == "deribit" and str((msg.get("params") or {}).get("channel", "")).startswith(
            "trades."):
        for t in msg["params"].get("data") or ():
            px, amount = float(t["price"]), float(t["amount"])
            base, quote = (amount / px, amount) if t["instrument_name"].endswith(
                "PERPETUAL") else (amount, amount * px)
            yield (venue, t["instrument_name"]), str(t["trade_id"]), Print(
                int(t["timestamp"]), px, base, base, quote, t["direction"] == "buy")


class Window(NamedTuple):
    start: int  # ms
    open: float
    high: float
    low: float
    close: float
    trades: int
    #: Sums over the window's prints of (size, base, quote), all and taker buys.
    size: float
    base: float
    quote: float
    buy_size: float
    buy_base: float
    buy_quote: float


def windows(prints: List[Print], seconds: int, start_ms: int, end_ms: int) -> List[Window]:
    """Candles of ``seconds`` starting in ``[start_ms, end_ms]`` (inclusive)."""
    step = seconds * 1000
    first = -(-start_ms // step) * step
    groups: Dict[int, List[Print]] = {}
    for p in prints[bisect.bisect_left(prints, first, key=lambda p: p.ts):]:
        s = p.ts - p.ts % step
        if s > end_ms:
            break
        groups.setdefault(s, []).append(p)
    out = []
    for s, ps in sorted(groups.items()):
        prices = [p.price for p in ps]
        buys = [p for p in ps if p.buy]
        out.append(Window(s, prices[0], max(prices), min(prices), prices[-1],
                          sum(1 for p in ps if p.size > 0.0), sum(p.size for p in ps),
                          sum(p.base for p in ps), sum(p.quote for p in ps),
                          sum(p.size for p in buys), sum(p.base for p in buys),
                          sum(p.quote for p in buys)))
    return out


def _int(query: Dict[str, List[str]], name: str) -> Optional[int]:
    values = query.get(name)
    if not values:
        return None
    try:
        return int(values[-1])
    except ValueError:
        return None


def _one(query: Dict[str, List[str]], name: str) -> Optional[str]:
    values = query.get(name)
    return values[-1] if values else None


def answer(prints: Prints, path: str, query: Dict[str, List[str]]) -> Optional[Tuple[int, bytes]]:
    """The reply to a candle GET, or None when ``path`` is no candle endpoint."""
    parts = path.rstrip("/").split("/")
    if path.startswith("/api/v3/brokerage/market/products/") and parts[-1] == "candles" \
            and len(parts) == 8:
        return _coinbase(prints, parts[-2], query)
    if path in KLINE_PATHS:
        return _klines(prints, KLINE_PATHS[path], query)
    if path == "/api/v2/public/get_tradingview_chart_data":
        return _deribit(prints, query)
    return None


def _coinbase(prints: Prints, product: str, query: Dict[str, List[str]]) -> Tuple[int, bytes]:
    seconds = COINBASE_GRANULARITY.get(_one(query, "granularity") or "")
    start, end = _int(query, "start"), _int(query, "end")
    if seconds is None or start is None or end is None or end < start:
        return 400, orjson.dumps({"error": "INVALID_ARGUMENT",
                                  "message": "start, end and granularity are required"})
    if (end - start) // seconds > COINBASE_MAX:
        return 400, orjson.dumps({"error": "INVALID_ARGUMENT", "message":
                                  f"number of candles requested should be less than "
                                  f"{COINBASE_MAX}"})
    rows = windows(prints.get(("coinbase", product), []), seconds, start * 1000,
                   end * 1000 - 1)
    candles = [{"start": str(w.start // 1000), "low": repr(w.low), "high": repr(w.high),
                "open": repr(w.open), "close": repr(w.close), "volume": repr(w.base)}
               for w in reversed(rows)]  # newest first, as Coinbase answers
    return 200, orjson.dumps({"candles": candles})


def _klines(prints: Prints, venue: str, query: Dict[str, List[str]]) -> Tuple[int, bytes]:
    seconds = KLINE_INTERVALS.get(_one(query, "interval") or "")
    if seconds == 1 and venue != "binance":
        seconds = None
    limit = _int(query, "limit") or 500
    cap = BINANCE_SPOT_MAX if venue == "binance" else BINANCE_FUTURES_MAX
    start, end = _int(query, "startTime"), _int(query, "endTime")
    symbol = _one(query, "symbol")
    if seconds is None or symbol is None or start is None or end is None or limit < 1:
        return 400, orjson.dumps({"code": -1100, "msg": "Illegal characters found in a "
                                  "parameter."})
    if limit > cap:
        return 400, orjson.dumps({"code": -1130, "msg": "Invalid data sent for a parameter."})
    rows = windows(prints.get((venue, symbol), []), seconds, start, end)[:limit]
    step = seconds * 1000
    # COIN-M's volume columns are contracts and its quote-volume column the coin;
    # elsewhere size is the base volume and the quote columns are quote currency.
    coinm = venue == "binance_coinm"
    body = [[w.start, repr(w.open), repr(w.high), repr(w.low), repr(w.close), repr(w.size),
             w.start + step - 1, repr(w.base if coinm else w.quote), w.trades,
             repr(w.buy_size), repr(w.buy_base if coinm else w.buy_quote), "0"] for w in rows]
    return 200, orjson.dumps(body)


def _deribit(prints: Prints, query: Dict[str, List[str]]) -> Tuple[int, bytes]:
    seconds = DERIBIT_RESOLUTIONS.get(_one(query, "resolution") or "")
    start, end = _int(query, "start_timestamp"), _int(query, "end_timestamp")
    name = _one(query, "instrument_name")
    if seconds is None or start is None or end is None or name is None:
        return 400, orjson.dumps({"jsonrpc": "2.0", "error": {
            "code": -32602, "message": "Invalid params"}})
    rows = windows(prints.get(("deribit", name), []), seconds, start, end)[:DERIBIT_MAX]
    result: Dict[str, Any] = {"status": "ok" if rows else "no_data",
                              "ticks": [w.start for w in rows]}
    for field, get in (("open", "open"), ("high", "high"), ("low", "low"),
                       ("close", "close"), ("volume", "base"), ("cost", "quote")):
        result[field] = [getattr(w, get) for w in rows]
    return 200, orjson.dumps({"jsonrpc": "2.0", "result": result})

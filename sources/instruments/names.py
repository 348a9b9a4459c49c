"""Product-name syntax per venue, checked before any network call.

Product names come from configuration files, environment variables and venue
replies, and end up in subscribe messages, log lines and output file names
(``{venue}_{product}.jsonl``). A name with ``/``, ``..``, blanks or control
characters could escape the output directory or break a log line, so every name
must match its venue's syntax exactly:

* Coinbase (Advanced Trade and Exchange): ``BASE-QUOTE`` product ids, ``BTC-USD``.
* Deribit: futures ``BTC-25MAR23`` (day without a leading zero), perpetuals
  ``BTC-PERPETUAL``, options ``BTC-27JUN25-60000-C`` / ``-P``, linear
  ``XRP_USDC-PERPETUAL`` and ``XRP_USDC-30JUN23-0d625-C`` (``d`` is the strike's
  decimal point), spot pairs ``BTC_USDC``.
* Binance (spot, USD-M, COIN-M): upper-case letters, digits and ``_``: ``BTCUSDT``,
  ``ETHUSD_PERP``, ``BTCUSD_210924``.

Every name is at most :data:`MAX_NAME` characters.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Pattern

MAX_NAME = 64

_CUR = r"[A-Z0-9]{1,20}"
_DAY_MONTH_YEAR = r"(?:[1-9]|[12][0-9]|3[01])(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[0-9]{2}"
_STRIKE = r"[0-9]{1,12}(?:d[0-9]{1,12})?"
_COINBASE = re.compile(rf"{_CUR}-{_CUR}")
_DERIBIT = re.compile(rf"{_CUR}(?:_{_CUR})?-(?:PERPETUAL|{_DAY_MONTH_YEAR}(?:-{_STRIKE}-[CP])?)"
                      rf"|{_CUR}_{_CUR}")
_BINANCE = re.compile(r"[A-Z0-9]{1,30}(?:_[A-Z0-9]{1,20})?")

_SYNTAX: Dict[str, Pattern[str]] = {
    "coinbase": _COINBASE, "coinbase_exchange": _COINBASE, "deribit": _DERIBIT,
    "binance": _BINANCE, "binance_usdm": _BINANCE, "binance_coinm": _BINANCE,
}
_EXAMPLES = {
    "coinbase": "BASE-QUOTE product ids such as BTC-USD",
    "coinbase_exchange": "BASE-QUOTE product ids such as BTC-USD",
    "deribit": "futures BTC-25MAR23, perpetuals BTC-PERPETUAL, options BTC-27JUN25-60000-C, "
               "linear XRP_USDC-PERPETUAL or XRP_USDC-30JUN23-0d625-C, spot BTC_USDC",
    "binance": "upper-case symbols such as BTCUSDT",
    "binance_usdm": "upper-case symbols such as BTCUSDT or BTCUSDT_210924",
    "binance_coinm": "upper-case symbols such as BTCUSD_PERP or BTCUSD_210924",
}
NAMED_VENUES = tuple(_SYNTAX)


def name_problem(venue: str, name: object) -> str:
    """Why ``name`` is not a valid product name on ``venue``, or "" if it is."""
    if not isinstance(name, str):
        return f"expected a product name string, got {type(name).__name__}"
    if not name:
        return "empty product name"
    if len(name) > MAX_NAME:
        return f"product name {name[:24]!a}... has {len(name)} characters, at most {MAX_NAME}"
    if any(c.isspace() or not c.isprintable() for c in name):
        return f"product name {name!a} contains blanks or control characters"
    if "/" in name or ".." in name or "\\" in name:
        return f"product name {name!a} contains '/', '\\' or '..'"
    if _SYNTAX[venue].fullmatch(name):
        return ""
    hint = ""
    if name != name.upper() and _SYNTAX[venue].fullmatch(name.upper()):
        hint = f" (names are upper-case: {name.upper()})"
    return f"{name!a} is not a {venue} product name{hint}; expected {_EXAMPLES[venue]}"


def check_names(venue: str, names: Iterable[object]) -> None:
    """Raise ValueError (one line, naming the venue and the value) for the first bad
    name; also for an unknown venue."""
    if venue not in _SYNTAX:
        raise ValueError(f"unknown venue {venue!r}; valid choices: {', '.join(NAMED_VENUES)}")
    for name in names:
        problem = name_problem(venue, name)
        if problem:
            raise ValueError(f"{venue}: {problem}")

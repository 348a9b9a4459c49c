"""Strict readers for the untrusted fields of instrument lists, and the tally of
entries they reject.

A venue's list is input like any frame: one entry with a tick size of ``"NaN"``,
``-1`` or ``true`` must not become an instrument (a zero tick size would divide
by zero downstream) nor abort the whole list. Each reader returns a clean value
or raises :class:`EntryError`, whose ``kind`` names the class of problem; the
parser skips the entry and counts it in :class:`Skipped`.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from typing import Any, Dict, Mapping, Optional, Set, Tuple

log = logging.getLogger("lobstream.instruments")

#: A decimal as venues write them: ``"0.00000100"``, ``"100"``, ``"1e-05"``. No
#: sign, blanks, ``NaN``/``Infinity`` or hexadecimal, which ``float()`` would take.
_DECIMAL = re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,40})?(?:[eE][-+]?[0-9]{1,3})?")
#: A currency code: ``BTC``, ``USDC``, ``1INCH``.
CURRENCY_CODE = re.compile(r"[A-Z0-9]{1,20}")
#: Epoch milliseconds from 2000 to year 3000 (Deribit perpetuals carry 32503708800000).
_MS_MIN, _MS_MAX = 946_684_800_000, 32_503_708_800_000
SAMPLE_CHARS = 160


class EntryError(ValueError):
    """One list entry that cannot become an instrument; ``kind`` is the counter key
    (``missing``, ``bad_number``, ``bad_text``, ``unsupported``...)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class BodyError(ValueError):
    """A reply that is not an instrument list at all (not JSON, an error reply,
    the wrong shape); the message is one line."""


def field(entry: Mapping[str, Any], name: str) -> Any:
    """``entry[name]``, or EntryError(``missing``)."""
    try:
        return entry[name]
    except KeyError:
        raise EntryError("missing", f"no {name!r}") from None


def number(entry: Mapping[str, Any], name: str, *, zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``zero``), from a JSON number or decimal string."""
    value = field(entry, name)
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        result = float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise EntryError("bad_number", f"{name}={_short(value)} is not a number")
    if not (0.0 <= result < math.inf) or (result == 0.0 and not zero):
        raise EntryError("bad_number", f"{name}={_short(value)} is not "
                         f"{'>= 0' if zero else 'positive'} and finite")
    return result


def optional_number(entry: Mapping[str, Any], name: str) -> Optional[float]:
    """Like :func:`number` with ``zero``, but an absent, null or empty value is None
    (Coinbase sends ``"volume_24h": ""`` for products that did not trade)."""
    if entry.get(name) in (None, ""):
        return None
    return number(entry, name, zero=True)


def epoch_ms(entry: Mapping[str, Any], name: str) -> int:
    """An integer epoch-milliseconds timestamp between 2000 and the year 3000."""
    value = field(entry, name)
    if isinstance(value, bool) or not isinstance(value, int) or not _MS_MIN <= value <= _MS_MAX:
        raise EntryError("bad_number", f"{name}={_short(value)} is not epoch milliseconds")
    return value


def flag(entry: Mapping[str, Any], name: str, default: Optional[bool] = None) -> bool:
    """A JSON boolean; ``default`` when absent (if given)."""
    if default is not None and name not in entry:
        return default
    value = field(entry, name)
    if not isinstance(value, bool):
        raise EntryError("bad_flag", f"{name}={_short(value)} is not true or false")
    return value


def text(entry: Mapping[str, Any], name: str, limit: int = 64) -> str:
    """A non-empty printable string of at most ``limit`` characters."""
    value = field(entry, name)
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise EntryError("bad_text", f"{name}={_short(value)} is not a short printable string")
    return value


def code(entry: Mapping[str, Any], name: str) -> str:
    """A currency code (upper-case letters and digits)."""
    value = field(entry, name)
    if not isinstance(value, str) or not CURRENCY_CODE.fullmatch(value):
        raise EntryError("bad_text", f"{name}={_short(value)} is not a currency code")
    return value


def choice(entry: Mapping[str, Any], name: str, valid: Mapping[str, Any]) -> Any:
    """``valid[entry[name]]``; an unknown value is ``unsupported``."""
    value = field(entry, name)
    if not isinstance(value, str) or value not in valid:
        raise EntryError("unsupported", f"{name}={_short(value)} (lobstream reads "
                         f"{', '.join(map(repr, valid))})")
    return valid[value]


def _short(value: Any) -> str:
    return repr(value)[:40]


class Skipped:
    """How many list entries were skipped, per kind of problem, with the first
    sample of each: the count for the status line, the sample for the log."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.samples: Dict[str, str] = {}

    def add(self, kind: str, sample: str) -> None:
        self.counts[kind] += 1
        self.samples.setdefault(kind, sample[:SAMPLE_CHARS])

    def merge(self, other: "Skipped") -> None:
        for kind, n in other.counts.items():
            self.counts[kind] += n
            self.samples.setdefault(kind, other.samples[kind])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class SkipLog:
    """Logs each (venue, kind) of skipped entries once per process, with its sample,
    so a list re-fetched every few minutes does not repeat the same warning."""

    def __init__(self) -> None:
        self._logged: Set[Tuple[str, str]] = set()

    def report(self, venue: str, skipped: Skipped) -> None:
        for kind, n in sorted(skipped.counts.items()):
            if (venue, kind) not in self._logged:
                self._logged.add((venue, kind))
                log.warning("%s: skipped %d instrument entr%s (%s); first: %s (further %s "
                            "entries are counted, not logged)", venue, n,
                            "y" if n == 1 else "ies", kind, skipped.samples[kind], kind)

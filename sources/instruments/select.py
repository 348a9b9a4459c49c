"""Which instruments to follow: explicit names plus selection rules, resolved
against a venue's instrument list.

A rule is a TOML inline table. Its keys narrow the venue's list; all keys of a rule
must hold (AND), a list value accepts any of its items (OR), and the result is the
union of the explicit names and of every rule:

``kind``
    ``"spot"``, ``"perpetual"``, ``"future"``, ``"option"`` (or a list), limited to
    the kinds the venue lists.
``base``, ``quote``, ``settle``
    Currency codes (or lists), compared upper-case: ``base = "BTC"``.
``match``
    Glob pattern(s) on the symbol, case-sensitive: ``*`` any run, ``?`` one
    character, ``[...]`` a set. ``{match = "BTC-*-C"}``: every BTC call.
``option_type``
    ``"call"`` or ``"put"``; only with options.
``expires_within``
    A duration (``"90m"``, ``"12h"``, ``"7d"``, ``"2w"``): instruments expiring
    within that time from now. Spot and perpetuals never match it.
``top``, ``by``
    Keep only the first ``top`` (1..1000) of the matching instruments, ranked ``by``
    ``"volume"`` (24 h quote volume, highest first; needs exactly one ``quote``
    and a venue whose list has volumes: Coinbase Advanced Trade) or ``"expiry"``
    (soonest first). Ties go by symbol. Instruments without the ranked value are
    left out. ``{top = 10, by = "volume", quote = "USD"}``.
``active``
    ``true`` (the default): only instruments the venue marks tradable. ``false``:
    also inactive ones (Binance ``PENDING_TRADING``, a Coinbase product in
    maintenance), so a book is followed from the moment it opens.

A rule needs at least one narrowing key (anything but ``active``): ``{}`` would
follow a whole venue. Rules are checked at start (:func:`parse_rule`); every problem
is a one-line ValueError naming the rule, the key and the valid choices.

:func:`resolve` is pure and deterministic. Explicit names come first in the order
given (an expired or inactive one is dropped), then what the rules add, by symbol.
Expired instruments never appear. The flow re-resolves periodically against a fresh
list and applies :func:`diff`, so new expiries are followed and expired ones dropped.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import (Any, Dict, FrozenSet, Iterable, List, Mapping, NamedTuple, NoReturn, Optional,
                    Sequence, Tuple)

from sources.instruments.fields import CURRENCY_CODE
from sources.instruments.model import EXPIRING, KINDS, OPTION, OPTION_TYPES, Instrument
from sources.instruments.venues import APIS, api_for

RULE_KEYS = ("kind", "base", "quote", "settle", "match", "option_type", "expires_within",
             "top", "by", "active")
RANK_BY = ("volume", "expiry")
MAX_TOP = 1000
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]{1,64}")
_SUGGESTIONS = 3
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class Rule:
    """One validated selection rule; None means "any". ``text`` is the rule as
    written, for messages."""

    text: str
    kinds: Optional[FrozenSet[str]] = None
    bases: Optional[FrozenSet[str]] = None
    quotes: Optional[FrozenSet[str]] = None
    settles: Optional[FrozenSet[str]] = None
    patterns: Optional[Tuple[str, ...]] = None
    option_types: Optional[FrozenSet[str]] = None
    expires_within_ms: Optional[int] = None
    top: Optional[int] = None
    by: Optional[str] = None
    active: bool = True

    def admits(self, inst: Instrument, now_ms: int) -> bool:
        """Whether ``inst`` passes every filter of the rule (``top`` aside) at ``now_ms``."""
        if inst.expiry_ms is not None and inst.expiry_ms <= now_ms:
            return False
        if self.active and not inst.active:
            return False
        for allowed, value in ((self.kinds, inst.kind), (self.bases, inst.base),
                               (self.quotes, inst.quote), (self.settles, inst.settle),
                               (self.option_types, inst.option_type)):
            if allowed is not None and value not in allowed:
                return False
        if self.patterns is not None and not any(fnmatchcase(inst.symbol, p)
                                                 for p in self.patterns):
            return False
        if self.expires_within_ms is not None and (
                inst.expiry_ms is None or inst.expiry_ms > now_ms + self.expires_within_ms):
            return False
        return True

    def select(self, instruments: Iterable[Instrument], now_ms: int) -> List[Instrument]:
        """The instruments this rule picks, ranked first where it has ``top``."""
        picked = [i for i in instruments if self.admits(i, now_ms)]
        if self.top is None:
            return picked
        if self.by == "volume":
            ranked = sorted((i for i in picked if i.volume_24h is not None),
                            key=lambda i: (-i.volume_24h, i.symbol))
        else:
            ranked = sorted((i for i in picked if i.expiry_ms is not None),
                            key=lambda i: (i.expiry_ms, i.symbol))
        return ranked[:self.top]


def parse_rule(venue: str, table: Any) -> Rule:
    """Validate one rule for ``venue``; ValueError (one line) on any problem."""
    api = api_for(venue)
    if not isinstance(table, Mapping):
        raise ValueError(f"{venue}: rule {_render(table)}: expected an inline table such as "
                         '{kind = "perpetual"}')
    text = _render(table)

    def fail(problem: str) -> NoReturn:
        raise ValueError(f"{venue}: rule {text}: {problem}")

    for key in table:
        if key not in RULE_KEYS:
            fail(f"unknown key {key!r}; valid keys: {', '.join(RULE_KEYS)}")
    if not any(key != "active" for key in table):
        fail("selects every instrument of the venue; narrow it with one of "
             + ", ".join(k for k in RULE_KEYS if k != "active"))

    def values(key: str, check: Any, hint: str) -> Optional[List[str]]:
        if key not in table:
            return None
        raw = table[key]
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items:
            fail(f"{key} = {_render(raw)}: expected {hint} or a non-empty list of them")
        for item in items:
            problem = check(item) if isinstance(item, str) else f"expected {hint}"
            if problem:
                fail(f"{key} = {_render(item)}: {problem}")
        return items

    def among(valid: Sequence[str], what: str) -> Any:
        return lambda v: "" if v in valid else f"valid choices for {what}: {', '.join(valid)}"

    def kind_check(v: str) -> str:
        if v in api.kinds:
            return ""
        listed = f"{venue} lists no {v} instruments; " if v in KINDS else ""
        return f"{listed}valid choices for kind: {', '.join(api.kinds)}"

    kinds = values("kind", kind_check, "a kind")
    codes = {key: values(key, lambda v: "" if CURRENCY_CODE.fullmatch(v.upper()) else
                         "expected a currency code such as BTC", "a currency code")
             for key in ("base", "quote", "settle")}
    patterns = values("match", lambda v: "" if _PATTERN.fullmatch(v) else
                      "expected a glob of letters, digits, _ - * ? [ ] ! (at most 64)",
                      "a glob pattern")
    option_types = values("option_type", among(OPTION_TYPES, "option_type"), "call or put")
    may_be = set(kinds or api.kinds)

    within = None
    if "expires_within" in table:
        raw = table["expires_within"]
        m = _DURATION.fullmatch(raw) if isinstance(raw, str) else None
        if m is None:
            fail(f"expires_within = {_render(raw)}: expected a duration such as \"90m\", "
                 "\"12h\", \"7d\" or \"2w\"")
        within = int(m.group(1)) * _UNIT_MS[m.group(2)]
    top, by = table.get("top"), table.get("by")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)
                            or not 1 <= top <= MAX_TOP):
        fail(f"top = {_render(top)}: expected an integer from 1 to {MAX_TOP}")
    if (top is None) != (by is None):
        fail(f"top and by go together: top = N with by = {' or '.join(map(repr, RANK_BY))}")
    if by is not None and by not in RANK_BY:
        fail(f"by = {_render(by)}: valid choices for by: {', '.join(RANK_BY)}")
    if (within is not None or by == "expiry") and not may_be & set(EXPIRING):
        what = "expires_within" if within is not None else 'by = "expiry"'
        fail(f"{what} needs instruments that expire (kind {' or '.join(EXPIRING)}), and this "
             f"rule selects only {', '.join(sorted(may_be))}")
    if option_types is not None and OPTION not in may_be:
        fail("option_type applies to options only")
    if by == "volume":
        if not api.volume:
            fail(f"by = \"volume\": the {venue} instrument list carries no 24 h volume; "
                 "rank by volume works on: " + ", ".join(a.venue for a in APIS.values() if a.volume))
        if codes["quote"] is None or len({q.upper() for q in codes["quote"]}) != 1:
            fail("by = \"volume\" compares 24 h volumes in the quote currency, so it needs "
                 "exactly one quote, e.g. quote = \"USD\"")
    active = table.get("active", True)
    if not isinstance(active, bool):
        fail(f"active = {_render(active)}: expected true or false")

    def frozen(items: Optional[List[str]], upper: bool = False) -> Optional[FrozenSet[str]]:
        return None if items is None else frozenset(v.upper() if upper else v for v in items)

    return Rule(text, frozen(kinds), frozen(codes["base"], True), frozen(codes["quote"], True),
                frozen(codes["settle"], True), None if patterns is None else tuple(patterns),
                frozen(option_types), within, top, by, active)


def parse_rules(venue: str, tables: Any) -> List[Rule]:
    """Validate a list of rules (the ``rules`` array of a venue's configuration)."""
    if not isinstance(tables, list):
        raise ValueError(f"{venue}: rules = {_render(tables)}: expected a list of inline tables")
    return [parse_rule(venue, t) for t in tables]


def resolve(names: Sequence[str], rules: Sequence[Rule], instruments: Sequence[Instrument],
            now_ms: int, *, venue: Optional[str] = None, strict: bool = True) -> List[Instrument]:
    """The instruments to follow at ``now_ms``: each live explicit name (in the given
    order, once), then every instrument a rule selects (by symbol).

    With ``strict`` (at start), a name missing from ``instruments`` raises a
    one-line ValueError with close matches; when re-resolving while running, pass
    ``strict=False`` so a name the venue stopped listing is dropped instead.
    ``venue`` names the venue in messages (default: that of ``instruments``).
    """
    by_symbol: Dict[str, Instrument] = {}
    for inst in instruments:
        by_symbol.setdefault(inst.symbol, inst)
    if strict:
        unknown = [n for n in names if n not in by_symbol]
        if unknown:
            where = venue or (instruments[0].venue if instruments else "?")
            raise ValueError(_unknown(where, unknown, by_symbol))
    out: List[Instrument] = []
    taken = set()
    for name in names:
        inst = by_symbol.get(name)
        if inst is None or name in taken or not inst.active or (
                inst.expiry_ms is not None and inst.expiry_ms <= now_ms):
            continue
        taken.add(name)
        out.append(inst)
    chosen: Dict[str, Instrument] = {}
    for rule in rules:
        for inst in rule.select(by_symbol.values(), now_ms):
            if inst.symbol not in taken:
                chosen[inst.symbol] = inst
    out.extend(chosen[s] for s in sorted(chosen))
    return out


class Changes(NamedTuple):
    """What a re-resolution changes: instruments to subscribe, to drop, and ones
    still followed whose details (tick size, status, volume...) changed."""

    subscribe: List[Instrument]
    unsubscribe: List[Instrument]
    changed: List[Instrument]


def diff(old: Sequence[Instrument], new: Sequence[Instrument]) -> Changes:
    """Compare two resolutions by symbol, keeping each list's order."""
    before = {i.symbol: i for i in old}
    after = {i.symbol for i in new}
    return Changes([i for i in new if i.symbol not in before],
                   [i for i in old if i.symbol not in after],
                   [i for i in new if i.symbol in before and before[i.symbol] != i])


def _unknown(venue: str, unknown: List[str], by_symbol: Mapping[str, Instrument]) -> str:
    if not by_symbol:
        return f"{venue}: unknown product {unknown[0]!r}: the venue listed no instruments"
    upper: Dict[str, str] = {}
    for symbol in sorted(by_symbol):
        upper.setdefault(symbol.upper(), symbol)
    first = unknown[0]
    close = difflib.get_close_matches(first.upper(), upper, n=_SUGGESTIONS, cutoff=0.6)
    text = f"{venue}: unknown product {first!r}"
    if close:
        text += f"; did you mean {', '.join(upper[c] for c in close)}?"
    others = sorted(set(unknown[1:]) - {first})
    if others:
        text += f" (also unknown: {', '.join(map(repr, others[:5]))}" \
                f"{f' and {len(others) - 5} more' if len(others) > 5 else ''})"
    return text


def _render(value: Any, limit: int = 120) -> str:
    """A value as it would look in TOML, shortened: ``{kind = "option", top = 3}``."""
    if isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k if _BARE_KEY.fullmatch(str(k)) else json.dumps(str(k))} = "
                               f"{_render(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = "[" + ", ".join(_render(v, limit) for v in value) + "]"
    elif isinstance(value, str):
        text = json.dumps(value)
    else:
        text = ascii(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."

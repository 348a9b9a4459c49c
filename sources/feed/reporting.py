"""Counting and logging what the exchanges send wrong, without flooding the log.

A feed that sends thousands of broken frames (or error replies) must not write
thousands of log lines, but the first one of each kind is exactly what an operator
needs to see. So each (venue, kind) is logged once, with a short sample, and then
only counted; the counts go to the status line and the metrics.

Samples come from the raw frame bytes, bounded and with control characters
escaped (:func:`~sources.venues.base.safe_text`): a hostile frame can neither
forge log lines nor, by nesting JSON a thousand levels deep, make the logging
itself raise. The feed hands in samples already redacted by their venue
(:attr:`~sources.venues.base.Venue.redact`), so a broken frame carrying a token
is shown without it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Tuple

from sources.venues.base import SAMPLE_CHARS, safe_text

log = logging.getLogger("lobstream.input")
errors_log = logging.getLogger("lobstream.feed")

#: Kinds told apart per venue. Error codes come from the exchange (Deribit's are any
#: integer, Coinbase's are the message text), so they are bounded here: 10,000
#: distinct codes were 10,000 log lines and 10,000 counters.
MAX_KINDS = 32
#: The kind that counts every kind past MAX_KINDS.
OTHER = "other"


class _OncePerKind:
    """Counts per (venue, kind), and which report is the first of its kind."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._kinds: Counter = Counter()

    def _count(self, venue: str, kind: str) -> Tuple[str, bool]:
        """The kind counted (``kind``, or OTHER past MAX_KINDS), and whether it is new."""
        if (venue, kind) not in self.counts:
            if self._kinds[venue] >= MAX_KINDS:
                kind = OTHER
            else:
                self._kinds[venue] += 1
        key = (venue, kind)
        first = key not in self.counts
        self.counts[key] += 1
        return kind, first


class BadInput(_OncePerKind):
    """Rejected frames per (venue, kind): logged once with a sample, then counted."""

    def report(self, venue: str, kind: str, reason: str, sample: Any) -> None:
        kind, first = self._count(venue, kind)
        if first:
            log.warning("%s: skipped %s frame (%s); sample: %s (further %s frames are "
                        "counted, not logged)", venue, kind, safe_text(reason),
                        safe_text(sample, SAMPLE_CHARS), kind)


class ErrorReplies(_OncePerKind):
    """Error replies per (venue, code): the first of each code is logged as an
    ERROR with what to do about it, later ones are counted; past MAX_KINDS codes,
    all further codes are counted together as ``other``."""

    def report(self, venue: str, code: str, about: str, detail: str, hint: str) -> None:
        code, first = self._count(venue, code)
        if first:
            errors_log.error("%s refused %s: %s%s (further errors with %s are counted, "
                             "not logged)", venue, about, detail, f" -> {hint}" if hint else "",
                             f"more than {MAX_KINDS} codes" if code == OTHER else "this code")

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
from typing import Any, Set, Tuple

from sources.venues.base import SAMPLE_CHARS, safe_text

log = logging.getLogger("lobstream.input")
errors_log = logging.getLogger("lobstream.feed")


class BadInput:
    """Rejected frames per (venue, kind): logged once with a sample, then counted."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._logged: Set[Tuple[str, str]] = set()

    def report(self, venue: str, kind: str, reason: str, sample: Any) -> None:
        key = (venue, kind)
        self.counts[key] += 1
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s: skipped %s frame (%s); sample: %s (further %s frames are "
                        "counted, not logged)", venue, kind, safe_text(reason),
                        safe_text(sample, SAMPLE_CHARS), kind)


class ErrorReplies:
    """Error replies per (venue, code): the first of each code is logged as an
    ERROR with what to do about it, later ones are counted."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._logged: Set[Tuple[str, str]] = set()

    def report(self, venue: str, code: str, about: str, detail: str, hint: str) -> None:
        key = (venue, code)
        self.counts[key] += 1
        if key not in self._logged:
            self._logged.add(key)
            errors_log.error("%s refused %s: %s%s (further errors with this code are counted, "
                             "not logged)", venue, about, detail, f" -> {hint}" if hint else "")

"""API credentials, and the frames that carry them: kept out of every log, sample and file.

A venue that serves more with credentials (Deribit ``raw`` books and trades,
Coinbase Exchange ``level2``) declares the fields its key has
(:class:`~sources.venues.base.CredentialField`), and a :class:`Redaction` naming
the JSON keys that carry a secret in its frames, in either direction: what
lobstream sends (Deribit ``client_secret``, Coinbase Exchange
``signature``/``passphrase``) and what the exchange answers (Deribit's
``access_token``/``refresh_token``).

Secrets travel as :class:`Secret`: its ``repr``, ``str`` and format are redacted,
and it refuses to be pickled, so a secret that ends up in a log argument, an
exception, a dataclass ``repr`` or a Bytewax snapshot shows as ``<redacted>``
or fails loudly instead of leaking. Only a venue's protocol calls
:meth:`Secret.reveal`, to put the value in the one message that needs it.

Redaction is applied where frames leave lobstream's memory: by the capture
recorder (sent, received and REST frames) and by the bad-frame sample. It must
be cheap on the hot path, so it looks for a needle first and leaves a frame
without one untouched (the same object). Measured on the bundled recordings
(three runs, 2-core shared machine), the test costs a tenth to a fifth of
recording the frame: Deribit's two needles 2.7-6.4 us per 557-byte frame against
23-32 us to record it, Coinbase Exchange's 1.8-4.2 us per 184-byte frame
against 10-22 us, and 9-22 ms for the 5.1 MB Advanced Trade snapshot against
54-112 ms. A frame with a needle is decoded, every value under a
secret key is replaced (at any depth), and it is encoded again; a frame that
does not decode (or nests too deep to encode again) is cut at its first needle.
"""

from __future__ import annotations

import hmac
from typing import Any, Iterable, List, Mapping, Optional, Tuple

import orjson

from sources.venues.base import Raw

#: What a secret value is replaced with in frames.
REDACTED = "<redacted>"
#: The settings key under which a connection's protocol finds its venue's
#: :class:`Credentials` (absent: the connection is not authenticated).
CREDENTIALS = "credentials"


class Secret:
    """A secret string that never shows itself: see the module docstring."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one message that must carry it."""
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is never pickled: it would end up in a snapshot or a file")


class Credentials:
    """One venue's API key: its named secrets, and where they were read from
    (for messages: ``the environment``, a file's path)."""

    __slots__ = ("venue", "origin", "_secrets")

    def __init__(self, venue: str, values: Mapping[str, str], origin: str) -> None:
        self.venue = venue
        self.origin = origin
        self._secrets = {name: Secret(value) for name, value in values.items()}

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self._secrets)

    def reveal(self, name: str) -> str:
        """The value of field ``name``, for the message that must carry it."""
        return self._secrets[name].reveal()

    def __repr__(self) -> str:
        return f"Credentials({self.venue}: {', '.join(self._secrets)} from {self.origin})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and (self.venue, self._secrets) == (
            other.venue, other._secrets)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("Credentials are never pickled: they would end up in a snapshot or a file")


def credentials(settings: Mapping[str, Any]) -> Optional[Credentials]:
    """The credentials a connection's settings carry, if any."""
    found = settings.get(CREDENTIALS)
    return found if isinstance(found, Credentials) else None


class Redaction:
    """Replaces the values of ``keys`` in a venue's frames with :data:`REDACTED`.

    ``needles``: byte strings at least one of which every frame carrying a
    secret contains (by default the keys themselves, quoted). They are the
    hot-path test, so a venue picks few and rare ones: Deribit's ``_token`` and
    ``client_`` cover its four keys in two scans."""

    def __init__(self, keys: Iterable[str], needles: Iterable[bytes] = ()) -> None:
        self.keys = frozenset(keys)
        self._needles = tuple(needles) or tuple(f'"{k}"'.encode() for k in sorted(self.keys))
        self._text_needles = tuple(n.decode() for n in self._needles)

    def __call__(self, frame: Raw) -> Raw:
        """``frame`` itself when it carries no secret, else a redacted copy."""
        needles = self._text_needles if isinstance(frame, str) else self._needles
        for needle in needles:
            if needle in frame:  # type: ignore[operator]
                return self._redact(frame)
        return frame

    def _redact(self, frame: Raw) -> Raw:
        try:
            doc = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return self._cut(frame)
        if not self._scrub(doc):
            return frame  # the needle was text, not a key: nothing secret
        try:
            out = orjson.dumps(doc)
        except TypeError:  # nested deeper than orjson writes (254 levels)
            return self._cut(frame)
        return out.decode() if isinstance(frame, str) else out

    def _scrub(self, doc: Any) -> bool:
        """Replace secret values in place (iteratively: a frame may nest deeper than
        Python's recursion limit); whether any was found."""
        keys, found = self.keys, False
        stack: List[Any] = [doc]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in keys:
                        node[key] = REDACTED
                        found = True
                    elif isinstance(value, (dict, list)):
                        stack.append(value)
            elif isinstance(node, list):
                stack.extend(v for v in node if isinstance(v, (dict, list)))
        return found

    def _cut(self, frame: Raw) -> Raw:
        """A frame that is not JSON: everything from its first needle on goes (what
        comes before a secret key cannot be its value)."""
        if isinstance(frame, str):
            at = min(i for i in (frame.find(n) for n in self._text_needles) if i >= 0)
            return frame[:at] + REDACTED
        at = min(i for i in (frame.find(n) for n in self._needles) if i >= 0)
        return bytes(frame[:at]) + REDACTED.encode()

"""Safe, collision-free file names for ``(venue, product)``: ``{venue}_{product}``.

Product names come from exchanges and configs, so they may hold ``/``, ``..``,
NUL, newlines, hundreds of characters or any Unicode. Each part is written as
its UTF-8 bytes, and every byte that is not plainly safe is percent-encoded
(``%`` and two upper-case hex digits):

* the venue keeps ``a-z 0-9 _`` (venue names are lower-case identifiers:
  ``coinbase_exchange`` stays as it is);
* the product keeps ``A-Z a-z 0-9 . - _``, except that an ``_`` with no
  ``A-Z``, ``.`` or ``-`` before it in the product is written ``%5F``.

That exception is what makes names collision-free although both parts may hold
``_``: without it, venue ``coinbase`` with product ``exchange_X`` and venue
``coinbase_exchange`` with product ``X`` would share a file. Every ``_`` of a
product name after its separator follows an ``A-Z``, ``.`` or ``-``, which a
venue part cannot contain, so there is exactly one place to split. Real product
names are untouched (``BTC-USD``, ``BTC_USDC-PERPETUAL``, ``BTCUSD_PERP``);
``BTC/USD`` becomes ``BTC%2FUSD`` and ``ETH-USD\\n`` becomes ``ETH-USD%0A``.

A name never contains ``/`` or NUL, never starts with ``.`` (the venue part
escapes it), and ``.`` or ``..`` as a product only ever appear inside a longer
name such as ``coinbase_...jsonl``, so no name can leave the directory or hide.
A part that is not a string is named by its ``str()``.

Names longer than :data:`MAX_STEM` bytes are cut (never inside an escape) and
end in ``~`` and 16 hex digits of a BLAKE2b hash of the full name. ``~`` is in
neither alphabet, so a cut name cannot equal an uncut one; two cut names collide
only if 64-bit hashes do. The cap keeps names within every common filesystem's
limit (255 bytes on ext4, xfs and tmpfs; 143 on eCryptfs). Names are
case-sensitive, like the products: on a case-insensitive filesystem two products
that differ only in case would share a file.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import List, Tuple

#: Longest stem (the name before its suffix) written as it is, in bytes.
MAX_STEM = 128
#: Characters of a cut stem's hash suffix, after the ``~``.
_HASH_HEX = 16

_VENUE_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_PRODUCT_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_")
#: A product byte after which its ``_`` can no longer be read as part of a venue.
_NOT_VENUE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ.-")
_UNDERSCORE = ord("_")


def _utf8(part: object) -> bytes:
    # surrogatepass: a lone surrogate (which a lenient JSON parser lets through)
    # still gets a name instead of an exception
    return (part if isinstance(part, str) else str(part)).encode("utf-8", "surrogatepass")


def _escape(byte: int) -> str:
    return f"%{byte:02X}"


def encode_venue(venue: object) -> str:
    """The venue part of a file name."""
    return "".join([chr(b) if b in _VENUE_SAFE else _escape(b) for b in _utf8(venue)])


def encode_product(product: object) -> str:
    """The product part of a file name."""
    out: List[str] = []
    after_not_venue = False
    for b in _utf8(product):
        if b == _UNDERSCORE and not after_not_venue:
            out.append(_escape(b))
        elif b in _PRODUCT_SAFE:
            out.append(chr(b))
            after_not_venue = after_not_venue or b in _NOT_VENUE
        else:
            out.append(_escape(b))
    return "".join(out)


def _cap(stem: str) -> str:
    if len(stem) <= MAX_STEM:
        return stem
    digest = hashlib.blake2b(stem.encode("ascii"), digest_size=_HASH_HEX // 2).hexdigest()
    keep = MAX_STEM - 1 - _HASH_HEX
    escape_start = stem.rfind("%", keep - 2, keep)  # an escape cut by the cap is dropped whole
    if escape_start != -1:
        keep = escape_start
    return f"{stem[:keep]}~{digest}"


@lru_cache(maxsize=65536)
def file_name(venue: object, product: object, suffix: str = ".jsonl") -> str:
    """The file name for ``(venue, product)``: ``{venue}_{product}{suffix}``, encoded
    as the module docstring says. Cached (bounded), as sinks ask for every batch."""
    return _cap(f"{encode_venue(venue)}_{encode_product(product)}") + suffix


def parse_name(name: str, suffix: str = ".jsonl") -> Tuple[str, str]:
    """The ``(venue, product)`` a file name was made from; ``ValueError`` for a cut
    name (its tail is a hash) or one :func:`file_name` would not write. For tools and
    tests that read an output directory.

    The separator is the last ``_`` before the first literal ``A-Z``, ``.`` or
    ``-`` (or the last ``_`` of all, if there is none): the venue part has none of
    those, and every ``_`` of the product part comes after one.
    """
    if not name.endswith(suffix) or "~" in name:
        raise ValueError(f"{name!r}: not an uncut {{venue}}_{{product}}{suffix} file name")
    stem = name[:len(name) - len(suffix)]
    sep = -1
    i = 0
    while i < len(stem) and ord(stem[i]) not in _NOT_VENUE:
        if stem[i] == "_":
            sep = i
        i += 3 if stem[i] == "%" else 1
    if sep == -1:
        raise ValueError(f"{name!r}: no venue/product separator")
    venue, product = _decode(stem[:sep]), _decode(stem[sep + 1:])
    if file_name(venue, product, suffix) != name:
        raise ValueError(f"{name!r}: not a name this module writes")
    return venue, product


def _decode(part: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(part):
        if part[i] == "%":
            raw.append(int(part[i + 1:i + 3], 16))  # ValueError if not two hex digits
            i += 3
        else:
            raw.append(ord(part[i]))
            i += 1
    return raw.decode("utf-8", "surrogatepass")

"""Where API credentials come from: the environment or a file, never the TOML configuration.

A venue's credentials (:attr:`sources.venues.base.Venue.credentials`) are read
from ``LOBSTREAM_<VENUE>_<FIELD>`` variables (``LOBSTREAM_DERIBIT_CLIENT_SECRET``)
and/or the TOML file named by ``<venue>.credentials_file``, whose top-level keys
are the field names (``client_id = "..."``); a variable overrides the file's
value. The configuration file itself is refused as a place for secrets: it is
the file people commit, paste into tickets and share.

A credentials file readable by group or others is used, with one warning line
(``chmod 600`` it). Every message here names variables, keys and paths, never a
value, and a TOML syntax error is reported by its position only (tomllib's own
message may quote the character it stumbled on).
"""

from __future__ import annotations

import difflib
import logging
import re
import stat
import tomllib
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from sources.venues import VENUES
from sources.venues.base import Venue
from sources.venues.credentials import Credentials

log = logging.getLogger("lobstream.config")

#: The venue-table key naming a venue's credentials file.
CREDENTIALS_FILE = "credentials_file"
_POSITION = re.compile(r"\(at (?:line \d+, column \d+|end of document)\)")


def env_name(venue: Venue, key: str) -> str:
    """The environment variable of one credential field."""
    return f"LOBSTREAM_{venue.name.upper()}_{key.upper()}"


def env_names() -> Dict[str, Tuple[str, str]]:
    """Every credential variable: name -> (venue, field)."""
    return {env_name(v, f.key): (v.name, f.key) for v in VENUES.values() for f in v.credentials}


def how_to_give(venue: Venue) -> str:
    """What to set for ``venue``'s credentials, for error messages."""
    names = _listed([env_name(venue, f.key) for f in venue.credentials])
    keys = _listed([f.key for f in venue.credentials])
    return f"set {names}, or name a file holding {keys} in {venue.name}.{CREDENTIALS_FILE}"


def _listed(items: List[str]) -> str:
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else items[0]


def refuse_in_config(venue: Venue, table: Mapping[str, object]) -> None:
    """Raise ValueError for a credential field written in the configuration file."""
    for f in venue.credentials:
        if f.key in table:
            raise ValueError(f"[{venue.name}] {f.key}: secrets are not read from the "
                             f"configuration file; set {env_name(venue, f.key)} or put it in "
                             f"the file named by {venue.name}.{CREDENTIALS_FILE}")


def load(venue: Venue, file: str, env: Mapping[str, str]) -> Optional[Credentials]:
    """``venue``'s credentials from ``file`` (if named) and ``env``, checked; None
    when neither gives any. Raises ValueError with one line."""
    values: Dict[str, str] = {}
    where: Dict[str, str] = {}
    origins = []
    if file:
        path = Path(file).expanduser()
        values.update(_read_file(venue, path))
        where.update((k, f"{venue.name}.{CREDENTIALS_FILE} {path}: {k}") for k in values)
        origins.append(str(path))
    for f in venue.credentials:
        name = env_name(venue, f.key)
        if name in env:
            values[f.key], where[f.key] = env[name], name
            if "the environment" not in origins:
                origins.append("the environment")
    if not values:
        return None
    missing = [f for f in venue.credentials if f.key not in values]
    if missing:
        raise ValueError(f"{venue.title} credentials are incomplete: "
                         f"{', '.join(f.key for f in missing)} missing; {how_to_give(venue)}")
    for f in venue.credentials:
        value = values[f.key]
        problem = ("is empty" if not value else
                   "has leading or trailing blanks" if value != value.strip() else
                   f.check(value) if f.check else None)
        if problem:
            raise ValueError(f"{where[f.key]} {problem}")
    return Credentials(venue.name, values, " and ".join(origins))


def _read_file(venue: Venue, path: Path) -> Dict[str, str]:
    where = f"{venue.name}.{CREDENTIALS_FILE} {path}"
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as ex:
        raise ValueError(f"{where}: cannot read it ({ex.strerror or ex})") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{where}: not a regular file")
    if mode & 0o077:
        log.warning("%s can be read by group or others (mode %03o): chmod 600 it",
                    where, stat.S_IMODE(mode))
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as ex:
        found = _POSITION.search(str(ex))
        raise ValueError(f"{where}: not valid TOML {found.group(0) if found else ''}"
                         .rstrip()) from None
    keys = [f.key for f in venue.credentials]
    out: Dict[str, str] = {}
    for key, value in doc.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; valid keys: {', '.join(keys)}"
            raise ValueError(f"{where}: unknown key {key[:40]!a}{hint}")
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key} must be a string")
        out[key] = value
    return out

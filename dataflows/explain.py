"""The effective settings of a run, each with where it came from.

``lobstream config`` shows what a run would use before it is started: every key
of ``[run]``, ``[bars]``, ``[replay]`` and of each venue the run follows, its
value after validation, and whether that value is the default, came from the
configuration file or from a ``LOBSTREAM_*`` variable (or a ``lobstream``
option, which sets one). The keys themselves are declared in
:mod:`dataflows.config` and in each venue's home; nothing is listed twice.
"""

from __future__ import annotations

from typing import Any, Collection, List, Mapping, NamedTuple, Tuple

from dataflows.config import (TABLE_KEYS, Config, Key, env_names, load_config, read_layers,
                              typed_value, venue_keys)
from dataflows.credentials import CREDENTIALS_FILE
from sources.instruments.universe import CHECK
from sources.venues import VENUES

DEFAULT = "default"

#: What the venue-wide keys mean (the venue's own keys carry their help).
VENUE_HELP = {
    "products": "products to follow (exchange names)",
    "url": "websocket URL",
    "products_per_connection": "products one connection carries",
    "rules": "select products from the venue's instrument list",
    "instruments": "check the names against the instrument list: check, require or off",
    "refresh": "seconds between re-resolving the products; 0: never",
    "rest_url": "REST host for instrument lists and snapshots ('' = the venue's own)",
    CREDENTIALS_FILE: "TOML file holding the API key's fields (secrets never go in the config)",
}


class Explained(NamedTuple):
    """One setting: ``table.key``, its effective value shown as text, its origin,
    the environment variable that sets it, and what it means."""

    key: str
    value: str
    origin: str
    env: str
    help: str


def show(value: Any) -> str:
    """A setting's value as ``config`` prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value) or "(none)"
    if value is None or value == "":
        return "(off)"
    return str(value)


def _env_of() -> Mapping[Tuple[str, str], str]:
    return {where: name for name, where in env_names().items()}


def explain(env: Mapping[str, str], options: Collection[str] = ()) -> Tuple[Config, List[Explained]]:
    """Validate the settings ``env`` gives (ConfigError, one line) and list them.

    ``options`` are the environment names a command-line option set: their origin
    reads ``option`` instead of ``environment``."""
    cfg = load_config(env)
    layers = read_layers(env)
    env_of = _env_of()
    rows: List[Explained] = []

    def add(table: str, key: str, value: Any, help_text: str) -> None:
        name = env_of.get((table, key), "")
        origin = layers.origins.get((table, key), DEFAULT)
        if name in options:
            origin = f"option (sets {name})"
        rows.append(Explained(f"{table}.{key}", show(value), origin, name, help_text))

    def keys(table: str, declared: Tuple[Key, ...]) -> None:
        for k in declared:
            value = typed_value(k, layers.tables[table].get(k.name, k.default), k.name)
            if table == "run" and k.name == "venues":
                value = list(cfg.venues) or value
            add(table, k.name, value, k.help)

    for table, declared in TABLE_KEYS.items():
        keys(table, declared)
    for name, vc in cfg.venues.items():
        common = {"products": vc.products, "url": vc.url,
                  "products_per_connection": vc.products_per_connection,
                  "rules": layers.tables[name].get("rules", []),
                  "instruments": vc.instruments, "refresh": vc.refresh,
                  "rest_url": vc.rest_url or VENUES[name].rest_url,
                  CREDENTIALS_FILE: layers.tables[name].get(CREDENTIALS_FILE, "")}
        for key in venue_keys(VENUES[name]):
            if key in VENUE_HELP:
                add(name, key, common[key], VENUE_HELP[key])
        for setting in VENUES[name].settings:
            add(name, setting.key, vc.settings[setting.key], setting.help)
    return cfg, rows


def reference() -> List[Explained]:
    """Every key lobstream reads, with its default (value) and variable; the
    venue tables apply when that venue is followed."""
    env_of = _env_of()
    rows = [Explained(f"{table}.{k.name}", show(k.default), DEFAULT, env_of[(table, k.name)],
                      k.help)
            for table, declared in TABLE_KEYS.items() for k in declared]
    for venue in VENUES.values():
        defaults = {"products": list(venue.default_products), "url": venue.default_url,
                    "products_per_connection": venue.limits.products_per_connection,
                    "rules": [], "instruments": CHECK, "refresh": 0.0,
                    "rest_url": venue.rest_url, CREDENTIALS_FILE: ""}
        for key in venue_keys(venue):
            if key not in VENUE_HELP:
                continue
            rows.append(Explained(f"{venue.name}.{key}", show(defaults[key]), DEFAULT,
                                  env_of[(venue.name, key)], VENUE_HELP[key]))
        for s in venue.settings:
            rows.append(Explained(f"{venue.name}.{s.key}", show(s.default), DEFAULT,
                                  env_of[(venue.name, s.key)], s.help))
    return rows

"""Run configuration: a TOML file and/or ``LOBSTREAM_*`` environment variables.

Everything is validated before the dataflow is built, and every problem is
reported as one line naming the bad value and the valid choices, so a typo fails
at start instead of as a silent empty feed an hour later.

Precedence: built-in defaults < the TOML file named by ``LOBSTREAM_CONFIG`` <
individual environment variables. See the README for the full table.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from sinks import SINKS
from sources.venues import coinbase, coinbase_exchange, deribit
from sources.venues import VENUE_NAMES

DERIBIT_INTERVALS = ("100ms", "agg2")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message is one line."""


@dataclass
class VenueConfig:
    products: List[str]
    url: str
    interval: str = ""
    #: The Coinbase Exchange book channel (empty for other venues).
    channel: str = ""


@dataclass
class Config:
    venues: Dict[str, VenueConfig] = field(default_factory=dict)
    replay: List[str] = field(default_factory=list)
    replay_speed: float = 0.0
    depth: int = 10
    alert_bps: float = 10.0
    sinks: List[str] = field(default_factory=lambda: ["jsonl"])
    jsonl_dir: str = "out"
    record_dir: Optional[str] = None
    exit_on_close: bool = False
    silence_timeout: float = 30.0
    status_interval: float = 60.0


_DEFAULT_PRODUCTS = {coinbase.VENUE: ["BTC-USD", "ETH-USD"],
                     deribit.VENUE: ["BTC-PERPETUAL", "ETH-PERPETUAL"],
                     coinbase_exchange.VENUE: ["BTC-USD", "ETH-USD"]}
_DEFAULT_URLS = {coinbase.VENUE: coinbase.DEFAULT_URL, deribit.VENUE: deribit.DEFAULT_URL,
                 coinbase_exchange.VENUE: coinbase_exchange.DEFAULT_URL}
#: Venues run when neither ``run.venues`` nor any venue table says otherwise;
#: Coinbase Exchange only runs when asked for.
_DEFAULT_VENUES = (coinbase.VENUE, deribit.VENUE)

_RUN_KEYS = ("venues", "depth", "alert_bps", "sinks", "jsonl_dir", "record_dir",
             "exit_on_close", "silence_timeout", "status_interval")
_VENUE_KEYS = {coinbase.VENUE: ("products", "url"), deribit.VENUE: ("products", "url", "interval"),
               coinbase_exchange.VENUE: ("products", "url", "channel")}
_REPLAY_KEYS = ("paths", "speed")
_TABLES = ("run", "replay") + VENUE_NAMES


def load_config(env: Optional[Mapping[str, str]] = None) -> Config:
    """Build the configuration from ``LOBSTREAM_CONFIG`` (if set) and the environment."""
    env = os.environ if env is None else env
    raw: Dict[str, Dict[str, Any]] = {}
    path = env.get("LOBSTREAM_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as ex:
            raise ConfigError(f"LOBSTREAM_CONFIG={path}: cannot read ({ex.strerror})") from None
        except tomllib.TOMLDecodeError as ex:
            raise ConfigError(f"LOBSTREAM_CONFIG={path}: invalid TOML ({ex})") from None
    _check_keys("config file", raw, _TABLES)
    run = _table(raw, "run")
    _check_keys("[run]", run, _RUN_KEYS)
    replay = _table(raw, "replay")
    _check_keys("[replay]", replay, _REPLAY_KEYS)
    tables = {v: _table(raw, v) for v in VENUE_NAMES}
    for venue, table in tables.items():
        _check_keys(f"[{venue}]", table, _VENUE_KEYS[venue])

    for name, key in (("LOBSTREAM_VENUES", "venues"), ("LOBSTREAM_SINKS", "sinks")):
        if name in env:
            run[key] = _split(env[name])
    for name, key in (("LOBSTREAM_DEPTH", "depth"), ("LOBSTREAM_ALERT_BPS", "alert_bps"),
                      ("LOBSTREAM_JSONL_DIR", "jsonl_dir"), ("LOBSTREAM_RECORD_DIR", "record_dir"),
                      ("LOBSTREAM_EXIT_ON_CLOSE", "exit_on_close"),
                      ("LOBSTREAM_SILENCE_TIMEOUT", "silence_timeout"),
                      ("LOBSTREAM_STATUS_INTERVAL", "status_interval")):
        if name in env:
            run[key] = env[name]
    if "LOBSTREAM_REPLAY" in env:
        replay["paths"] = _split(env["LOBSTREAM_REPLAY"])
    if "LOBSTREAM_REPLAY_SPEED" in env:
        replay["speed"] = env["LOBSTREAM_REPLAY_SPEED"]
    for venue, table in tables.items():
        for key in _VENUE_KEYS[venue]:
            name = f"LOBSTREAM_{venue.upper()}_{key.upper()}"
            if name in env:
                table[key] = _split(env[name]) if key == "products" else env[name]

    cfg = Config(
        depth=_number("depth", run.get("depth", 10), int, minimum=1),
        alert_bps=_number("alert_bps", run.get("alert_bps", 10.0), float, minimum=0.0),
        sinks=_choices("sinks", run.get("sinks", ["jsonl"]), tuple(SINKS)),
        jsonl_dir=str(run.get("jsonl_dir", "out")),
        record_dir=str(run["record_dir"]) if run.get("record_dir") else None,
        exit_on_close=_boolean("exit_on_close", run.get("exit_on_close", False)),
        silence_timeout=_number("silence_timeout", run.get("silence_timeout", 30.0), float,
                                minimum=1.0),
        status_interval=_number("status_interval", run.get("status_interval", 60.0), float,
                                minimum=0.0),
        replay=[str(p) for p in _list("replay.paths", replay.get("paths", []))],
        replay_speed=_number("replay.speed", replay.get("speed", 0.0), float, minimum=0.0),
    )
    if cfg.replay:
        for p in cfg.replay:
            if not Path(p).exists():
                raise ConfigError(f"replay path {p!r} does not exist")
        return cfg
    names = run.get("venues")
    if names is None:
        names = [v for v in VENUE_NAMES if tables[v]] or list(_DEFAULT_VENUES)
    for venue in _choices("venues", names, VENUE_NAMES):
        cfg.venues[venue] = _venue(venue, tables[venue])
    return cfg


def _venue(venue: str, table: Dict[str, Any]) -> VenueConfig:
    products = [str(p) for p in _list(f"{venue}.products",
                                      table.get("products", _DEFAULT_PRODUCTS[venue]))]
    if not products or any(not p or ":" in p or p != p.strip() for p in products):
        raise ConfigError(f"{venue}.products={products!r}: expected non-empty product names "
                          "such as " + ", ".join(_DEFAULT_PRODUCTS[venue]))
    url = str(table.get("url", _DEFAULT_URLS[venue]))
    if not url.startswith(("ws://", "wss://")):
        raise ConfigError(f"{venue}.url={url!r}: expected a ws:// or wss:// URL")
    interval = channel = ""
    if venue == deribit.VENUE:
        interval = str(table.get("interval", deribit.DEFAULT_INTERVAL))
        if interval not in DERIBIT_INTERVALS:
            hint = " (raw books need authentication, which lobstream does not do)" \
                if interval == "raw" else ""
            raise ConfigError(f"deribit.interval={interval!r}{hint}; valid choices: "
                              + ", ".join(DERIBIT_INTERVALS))
    if venue == coinbase_exchange.VENUE:
        channel = str(table.get("channel", coinbase_exchange.DEFAULT_CHANNEL))
        if channel not in coinbase_exchange.PUBLIC_CHANNELS:
            hint = " (level2 needs authentication, which lobstream does not do)" \
                if channel == "level2" else ""
            raise ConfigError(f"coinbase_exchange.channel={channel!r}{hint}; valid choices: "
                              + ", ".join(coinbase_exchange.PUBLIC_CHANNELS))
    return VenueConfig(products, url, interval, channel)


def _table(raw: Mapping[str, Any], name: str) -> Dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}={value!r}: expected a [{name}] table")
    return dict(value)


def _check_keys(where: str, table: Mapping[str, Any], valid: Tuple[str, ...]) -> None:
    for key in table:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")


def _split(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _list(name: str, value: Any) -> List[Any]:
    if isinstance(value, str):
        return _split(value)
    if not isinstance(value, list):
        raise ConfigError(f"{name}={value!r}: expected a list")
    return value


def _choices(name: str, value: Any, valid: Tuple[str, ...]) -> List[str]:
    items = [str(v) for v in _list(name, value)]
    for item in items:
        if item not in valid:
            raise ConfigError(f"{name}: unknown value {item!r}; valid choices: {', '.join(valid)}")
    if not items:
        raise ConfigError(f"{name} is empty; valid choices: {', '.join(valid)}")
    return items


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise TypeError(value)  # true is not 1, and 2.5 levels is not 2
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected {'an integer' if kind is int else 'a number'}"
                          f" >= {minimum:g}") from None
    if isinstance(number, float) and not math.isfinite(number) or number < minimum:
        raise ConfigError(f"{name}={value!r}: must be >= {minimum:g}")
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={value!r}: expected true or false")

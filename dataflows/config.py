"""Run configuration: a TOML file and/or ``LOBSTREAM_*`` environment variables.

Everything is validated before the dataflow is built, and every problem is
reported as one line naming the bad value and the valid choices, so a typo fails
at start instead of as a silent empty feed an hour later. A misspelt key or
``LOBSTREAM_*`` variable is an error with the closest valid name, never ignored.

Precedence: built-in defaults < the TOML file named by ``LOBSTREAM_CONFIG`` <
individual environment variables. The keys are declared once, here for
``[run]``/``[replay]`` and in each venue's home for its own table
(:attr:`sources.venues.base.Venue.settings`); the README lists them all.
API credentials are not configuration keys: they come from their own variables
or a credentials file (:mod:`dataflows.credentials`), and a setting that needs
them (Deribit ``raw``) is refused at start without them.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from dataflows.credentials import (CREDENTIALS_FILE, env_names as credential_names, how_to_give,
                                   load as load_credentials, refuse_in_config)
from sinks import SINKS
from sinks.store import KINDS as STORE_KINDS
from sources.kafka.settings import STARTS, KafkaSettings, build_settings, parse_client
from sources.venues import VENUE_NAMES, VENUES
from sources.capture.format import check_record_dir
from sources.instruments.select import Rule, parse_rules
from sources.instruments.universe import CHECK, MODES, OFF, REQUIRE
from sources.venues.base import Setting, Venue, safe_text
from sources.venues.credentials import Credentials
from state.bars import parse_interval


class ConfigError(ValueError):
    """A configuration value that cannot work; the message is one line."""


@dataclass
class VenueConfig:
    """What to follow on one venue. ``settings`` holds the venue's own keys
    (e.g. Deribit ``interval``), validated. ``rules`` select products from the
    venue's instrument list, fetched from ``rest_url`` (the venue's own REST host
    when empty) unless ``instruments`` is ``off``; ``refresh`` re-resolves every
    so many seconds (0: never). Built in code the listing is not fetched unless
    asked; from a file or the environment it is checked by default.
    ``credentials``: the venue's API key, when given (see
    :mod:`dataflows.credentials`)."""

    products: List[str]
    url: str
    settings: Dict[str, Any] = field(default_factory=dict)
    products_per_connection: int = 0  # 0: the venue's default
    rules: Tuple[Rule, ...] = ()
    instruments: str = OFF
    refresh: float = 0.0
    rest_url: str = ""
    credentials: Optional[Credentials] = None


@dataclass
class Config:
    venues: Dict[str, VenueConfig] = field(default_factory=dict)
    replay: List[str] = field(default_factory=list)
    replay_speed: float = 0.0
    depth: int = 10
    alert_bps: float = 10.0
    sinks: List[str] = field(default_factory=lambda: ["jsonl"])
    jsonl_dir: str = "out"
    jsonl_mode: str = "append"
    jsonl_max_open: int = 64
    record_dir: Optional[str] = None
    exit_on_close: bool = False
    silence_timeout: float = 30.0
    status_interval: float = 60.0
    metrics_addr: Optional[str] = None
    queue_frames: int = 100_000
    queue_mb: int = 256
    #: Bar intervals in ms (empty: no bars); lateness and revision window in seconds.
    bar_intervals: Tuple[int, ...] = (60_000,)
    bar_lateness: float = 2.0
    bar_keep: float = 60.0
    bar_empty: bool = False
    bar_console: bool = False
    #: The ``[store]`` and ``[sql]`` tables, validated (see STORE_KEYS, SQL_KEYS);
    #: built directly, a Config has their defaults (store mode ``append``).
    store: Dict[str, Any] = field(default_factory=lambda: _defaults(STORE_KEYS, mode="append"))
    sql: Dict[str, Any] = field(default_factory=lambda: _defaults(SQL_KEYS))
    #: Where book frames come from when not replaying: the venues' websockets, or
    #: the raw topic a capture publishes (:mod:`dataflows.capture`).
    input: str = "websocket"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)


@dataclass(frozen=True)
class Key:
    """A ``[run]``/``[replay]`` key: its type comes from the default; numbers have
    a range. ``zero`` says what 0 does where it is also accepted ("to disable")."""

    name: str
    default: Any
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    zero: str = ""
    choices: Tuple[str, ...] = ()


INPUTS = ("websocket", "kafka")
RUN_KEYS = (
    Key("venues", [], "venues to follow", choices=VENUE_NAMES),
    Key("input", "websocket", "where book frames come from", choices=INPUTS),
    Key("depth", 10, "levels per side in depth_imbalance", 1, 1000),
    Key("alert_bps", 10.0, "spread alert threshold, basis points of mid", 0.0, 1e6),
    Key("sinks", ["jsonl"], "where records go", choices=tuple(SINKS)),
    Key("jsonl_dir", "out", "directory of the per-product JSON-lines files"),
    Key("jsonl_mode", "append", "append to existing files, or replace them once per run",
        choices=("append", "replace")),
    Key("jsonl_max_open", 64, "JSON-lines files a worker keeps open", 1, 100_000),
    Key("record_dir", "", "also record raw frames to this directory"),
    Key("exit_on_close", False, "end when a server closes normally (simulator)"),
    Key("silence_timeout", 30.0, "seconds without any frame before reconnecting", 1.0, 3600.0),
    Key("status_interval", 60.0, "seconds between status lines; 0 disables", 1.0, 86400.0,
        zero="to disable"),
    Key("metrics_addr", "", "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9464)"),
    Key("queue_frames", 100_000, "frames buffered per worker before dropping", 1000, 10**7),
    Key("queue_mb", 256, "MiB buffered per worker before dropping", 16, 65536),
)
BARS_KEYS = (
    Key("intervals", ["1m"], "bar intervals, e.g. 1s, 10s, 1m, 5m, 1h; [] for none"),
    Key("lateness", 2.0, "seconds of exchange time a trade may arrive late", 0.0, 3600.0),
    Key("keep", 60.0, "seconds after its end a bar is still revised by late trades", 0.0,
        86400.0),
    Key("empty", False, "also emit windows without trades"),
    Key("console", False, "print a line per closed bar"),
)
STORE_KEYS = (
    Key("root", "store", "tick store directory or object-store URI (s3://bucket/prefix)"),
    Key("mode", "auto", "append: continue each day's version; replace: write days afresh; "
        "auto: replace when replaying", choices=("auto", "append", "replace")),
    Key("kinds", list(STORE_KINDS), "record kinds stored", choices=STORE_KINDS),
    Key("max_files", 16, "files per partition-day before they are merged", 1, 1000),
    Key("max_rows", 500_000, "rows buffered per worker before an early commit", 1000, 10**7),
    Key("resume", "keep", "after a restart from recovery: keep what was committed (live feeds "
        "replay nothing) or rewind to the snapshot (sources that replay)",
        choices=("keep", "rewind")),
)
SQL_KEYS = (
    Key("dsn", "sqlite:///bars.sqlite", "bars database: sqlite:///PATH, "
        "postgresql://USER:PASS@HOST:PORT/DB or mysql://USER:PASS@HOST:PORT/DB"),
    Key("table", "bars", "table the bars are upserted into"),
)
_DEFAULT_KAFKA = KafkaSettings()
KAFKA_KEYS = (
    Key("brokers", list(_DEFAULT_KAFKA.brokers), "bootstrap brokers, HOST:PORT"),
    Key("raw_topic", _DEFAULT_KAFKA.raw_topic, "the topic the capture publishes frames to"),
    Key("control_topic", _DEFAULT_KAFKA.control_topic,
        "resync requests from analytics to the capture"),
    *(Key(key, _DEFAULT_KAFKA.topics[kind], f"{kind} records (\"\" = not published)")
      for kind, key in (("summary", "summary_topic"), ("trade", "trade_topic"),
                        ("bar", "bar_topic"), ("ticker", "ticker_topic"),
                        ("status", "status_topic"))),
    Key("start", _DEFAULT_KAFKA.start, "analytics without a resume position start at the "
        "oldest retained frame or the newest", choices=STARTS),
    Key("tail", True, "keep reading at the end of the topic (false: stop there)"),
    Key("snapshot_refresh", _DEFAULT_KAFKA.snapshot_refresh, "capture: seconds between fresh "
        "snapshots per product; 0 disables", 10.0, 86400.0, zero="to disable"),
    Key("connect_timeout", 0.0, "seconds to wait for unreachable brokers at start; 0 waits "
        "as long as it takes", 1.0, 86400.0, zero="to wait as long as it takes"),
)
#: The ``[kafka.config]`` table: librdkafka properties passed through (SASL, TLS).
KAFKA_CLIENT = "config"
REPLAY_KEYS = (
    Key("paths", [], "capture files or directories; replaces the live venues"),
    # Not below 1/1000 of the recorded pace: at 1e-300 the replay's next wake-up
    # time overflowed datetime and killed the flow at the second frame.
    Key("speed", 0.0, "0 = as fast as possible, 1 = recorded pace", 0.001, 1e6,
        zero="for as fast as possible"),
)
#: The tables of lobstream's own keys (venue tables aside), in the order shown.
TABLE_KEYS: Dict[str, Tuple[Key, ...]] = {"run": RUN_KEYS, "replay": REPLAY_KEYS,
                                          "bars": BARS_KEYS, "store": STORE_KEYS,
                                          "sql": SQL_KEYS, "kafka": KAFKA_KEYS}
#: Keys every venue table has, besides the venue's own settings.
VENUE_COMMON = ("products", "url", "products_per_connection", "rules", "instruments", "refresh",
                "rest_url")
#: ``LOBSTREAM_*`` variables that belong to lobstream's scripts, not to the flow.
SCRIPT_VARIABLES = frozenset({"LOBSTREAM_CONFIG", "LOBSTREAM_DEMO_SPEED",
                              "LOBSTREAM_SOAK_SECONDS", "LOBSTREAM_EXTRAS",
                              "LOBSTREAM_FUZZ_FRAMES", "LOBSTREAM_FUZZ_SEED"})
#: Venues run when neither ``run.venues`` nor any venue table says otherwise;
#: Coinbase Exchange only runs when asked for.
DEFAULT_VENUES = ("coinbase", "deribit")


def _defaults(keys: Sequence[Key], **override: Any) -> Dict[str, Any]:
    """A table's default values (lists copied), with ``override``."""
    return {k.name: list(k.default) if isinstance(k.default, list) else k.default
            for k in keys} | override


def _show(value: Any) -> str:
    """A configuration value as it appears in an error: strings quoted (and made
    safe for one line), numbers as they are, anything else by its type."""
    if isinstance(value, str):
        return repr(safe_text(value, 60))
    if isinstance(value, (bool, int, float)):
        return repr(value)
    return f"<{type(value).__name__}>"


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f"; valid keys: {', '.join(valid)}"


def _check_keys(where: str, table: Mapping[str, Any], valid: Sequence[str]) -> None:
    for key in table:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {_show(key)}"
                              f"{_suggest(str(key), valid)}")


def venue_keys(venue: Venue) -> Tuple[str, ...]:
    """The keys of a venue's table."""
    return VENUE_COMMON + tuple(s.key for s in venue.settings) + (
        (CREDENTIALS_FILE,) if venue.credentials else ())


def env_names() -> Dict[str, Tuple[str, str]]:
    """Every environment variable the flow reads as configuration (secrets are
    read by the credentials loader, never into a table): name -> (table, key)."""
    names = {f"LOBSTREAM_{k.name.upper()}": ("run", k.name) for k in RUN_KEYS}
    names["LOBSTREAM_REPLAY"] = ("replay", "paths")
    names["LOBSTREAM_REPLAY_SPEED"] = ("replay", "speed")
    for table in ("bars", "store", "sql"):
        names.update({f"LOBSTREAM_{table.upper()}_{k.name.upper()}": (table, k.name)
                      for k in TABLE_KEYS[table]})
    names.update({f"LOBSTREAM_KAFKA_{k.name.upper()}": ("kafka", k.name)
                  for k in KAFKA_KEYS + (Key(KAFKA_CLIENT, "", ""),)})
    for venue in VENUES.values():
        for key in venue_keys(venue):
            names[f"LOBSTREAM_{venue.name.upper()}_{key.upper()}"] = (venue.name, key)
    return names


class Layers(NamedTuple):
    """The settings as given, before validation: every table's keys after the file
    and the environment were laid over the defaults, and where each came from
    (``(table, key) -> "file PATH"`` or ``"environment NAME"``; absent: default)."""

    tables: Dict[str, Dict[str, Any]]
    origins: Dict[Tuple[str, str], str]


def read_layers(env: Optional[Mapping[str, str]] = None) -> Layers:
    """Read ``LOBSTREAM_CONFIG`` (if set) and the environment, checking every name."""
    env = os.environ if env is None else env
    raw: Dict[str, Any] = {}
    path = env.get("LOBSTREAM_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as ex:
            raise ConfigError(f"LOBSTREAM_CONFIG={path}: cannot read ({ex.strerror})") from None
        except tomllib.TOMLDecodeError as ex:
            raise ConfigError(f"LOBSTREAM_CONFIG={path}: invalid TOML ({ex})") from None
    _check_keys("config file", raw, tuple(TABLE_KEYS) + VENUE_NAMES)
    tables = {name: _table(raw, name) for name in tuple(TABLE_KEYS) + VENUE_NAMES}
    for name, declared in TABLE_KEYS.items():
        extra = [KAFKA_CLIENT] if name == "kafka" else []
        _check_keys(f"[{name}]", tables[name], [k.name for k in declared] + extra)
    for venue in VENUES.values():
        try:
            refuse_in_config(venue, tables[venue.name])
        except ValueError as ex:
            raise ConfigError(str(ex)) from None
        _check_keys(f"[{venue.name}]", tables[venue.name], venue_keys(venue))
    origins = {(table, key): f"file {path}" for table, values in tables.items() for key in values}
    names = env_names()
    secrets = credential_names()  # read by the credentials loader, never into a table
    for name, value in env.items():
        if not name.startswith("LOBSTREAM_") or name in SCRIPT_VARIABLES or name in secrets:
            continue
        if name not in names:
            raise ConfigError(f"unknown environment variable {safe_text(name, 60)}"
                              f"{_suggest(name, sorted({**names, **secrets}))}")
        table, key = names[name]
        tables[table][key] = value
        origins[(table, key)] = f"environment {name}"
    return Layers(tables, origins)


def typed_table(tables: Mapping[str, Mapping[str, Any]], name: str) -> Dict[str, Any]:
    """Every key of the table ``name``, typed and checked (defaults filled in);
    ``run`` keys are named bare in errors, the others ``table.key``."""
    prefix = "" if name == "run" else f"{name}."
    return {k.name: typed_value(k, tables[name].get(k.name, k.default), prefix + k.name)
            for k in TABLE_KEYS[name]}


def load_config(env: Optional[Mapping[str, str]] = None) -> Config:
    """Build the configuration from ``LOBSTREAM_CONFIG`` (if set) and the environment."""
    env = os.environ if env is None else env  # the credentials loader reads it too
    tables = read_layers(env).tables
    venues_given = [v for v in VENUE_NAMES if tables[v]]
    run, replay, bars, store, sql, kafka = (typed_table(tables, name) for name in TABLE_KEYS)
    try:
        kafka_settings = build_settings(kafka, parse_client(tables["kafka"].get(KAFKA_CLIENT,
                                                                                 {})))
    except ValueError as ex:
        raise ConfigError(str(ex)) from None
    intervals = []
    for text in bars["intervals"]:
        try:
            intervals.append(parse_interval(text))
        except ValueError as ex:
            raise ConfigError(f"bars.intervals: {ex}") from None
    cfg = Config(
        depth=run["depth"], alert_bps=run["alert_bps"], jsonl_dir=run["jsonl_dir"],
        jsonl_mode=run["jsonl_mode"], jsonl_max_open=run["jsonl_max_open"],
        sinks=run["sinks"] or _empty("sinks", tuple(SINKS)),
        record_dir=run["record_dir"] or None, exit_on_close=run["exit_on_close"],
        silence_timeout=run["silence_timeout"], status_interval=run["status_interval"],
        metrics_addr=run["metrics_addr"] or None, queue_frames=run["queue_frames"],
        queue_mb=run["queue_mb"], replay=[str(p) for p in replay["paths"]],
        replay_speed=replay["speed"], bar_intervals=tuple(sorted(set(intervals))),
        bar_lateness=bars["lateness"], bar_keep=bars["keep"], bar_empty=bars["empty"],
        bar_console=bars["console"], input=run["input"], kafka=kafka_settings,
        store=store, sql=sql)
    if cfg.store["mode"] == "auto":
        cfg.store["mode"] = "replace" if cfg.replay else "append"
    if cfg.metrics_addr:
        parse_addr(cfg.metrics_addr)
    if cfg.record_dir:
        try:
            check_record_dir(cfg.record_dir)
        except ValueError as ex:
            raise ConfigError(f"record_dir: {ex}") from None
    for p in cfg.replay:
        if not Path(p).exists():
            raise ConfigError(f"replay path {p!r} does not exist")
    if cfg.replay and cfg.input == "kafka":
        raise ConfigError("replay.paths and run.input=\"kafka\" both name the input; "
                          "set one of them")
    if cfg.replay:
        return cfg
    names_run = run["venues"] or venues_given or list(DEFAULT_VENUES)
    for name in names_run:
        cfg.venues[name] = _venue(VENUES[name], tables[name], cfg.depth, env)
    return cfg


def _venue(venue: Venue, table: Dict[str, Any], depth: int,
           env: Mapping[str, str]) -> VenueConfig:
    name = venue.name
    try:
        rules = tuple(parse_rules(name, _rules(name, table.get("rules", []))))
    except ValueError as ex:
        raise ConfigError(str(ex)) from None
    default = [] if rules else list(venue.default_products)
    products = [str(p) for p in _list(f"{name}.products", table.get("products", default))]
    if not products and not rules:
        raise ConfigError(f"{name}.products is empty and no rules select products; e.g. "
                          f"{', '.join(venue.default_products)}")
    for product in products:
        problem = venue.check_product(product)
        if problem:
            raise ConfigError(f"{name}.products: {problem}")
    if len(set(products)) != len(products):
        raise ConfigError(f"{name}.products lists a product twice")
    url = str(table.get("url", venue.default_url))
    if not url.startswith(("ws://", "wss://")):
        raise ConfigError(f"{name}.url={_show(url)}: expected a ws:// or wss:// URL")
    limits = venue.limits
    per_conn = typed_value(Key("products_per_connection", limits.products_per_connection, "", 1,
                               limits.max_products_per_connection),
                           table.get("products_per_connection", limits.products_per_connection),
                           f"{name}.products_per_connection")
    settings = {s.key: _setting(name, s, table.get(s.key, s.default)) for s in venue.settings}
    try:
        creds = load_credentials(venue, str(table.get(CREDENTIALS_FILE, "")), env) \
            if venue.credentials else None
    except ValueError as ex:
        raise ConfigError(str(ex)) from None
    for s in venue.settings:
        if creds is None and settings[s.key] in s.needs_credentials:
            others = ", ".join(str(c) for c in s.choices if c not in s.needs_credentials)
            raise ConfigError(f"{name}.{s.key}={_show(settings[s.key])} needs {venue.title} API "
                              f"credentials: {how_to_give(venue)}; without them use {others}")
    book_depth = settings.get("depth")
    if book_depth and depth > book_depth:
        raise ConfigError(f"run.depth={depth} exceeds {name}.depth={book_depth}: a depth-limited "
                          f"book has only {book_depth} levels per side")
    mode = str(table.get("instruments", CHECK))
    if mode not in MODES:
        raise ConfigError(f"{name}.instruments={_show(mode)}; valid choices: {', '.join(MODES)}")
    if rules and mode == OFF:
        raise ConfigError(f"{name}.rules need the instrument list; set {name}.instruments to "
                          f"{CHECK} or {REQUIRE}")
    refresh = _number(f"{name}.refresh", table.get("refresh", 3600.0 if rules else 0.0), float,
                      10.0, 86400.0, "to never refresh")
    rest_url = str(table.get("rest_url", ""))
    if rest_url and not rest_url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}.rest_url={_show(rest_url)}: expected an http:// or https:// "
                          "URL")
    return VenueConfig(products, url, settings, per_conn, rules, mode, refresh, rest_url, creds)


def _rules(name: str, value: Any) -> Any:
    """Rules from TOML (a list of inline tables) or the environment (JSON text)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ConfigError(f"{name}.rules: expected JSON such as "
                              '[{"kind": "option", "base": "BTC"}]') from None
    return value


def _setting(venue: str, setting: Setting, value: Any) -> Any:
    default = setting.default
    where = f"{venue}.{setting.key}"
    if isinstance(default, bool):
        value = _boolean(where, value)
    elif isinstance(default, int):
        value = _number(where, value, int, None, None)
    else:
        value = str(value)
    check = setting.check or (lambda _: None)
    valid = ", ".join(str(c) for c in setting.choices if not check(c))
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{where}={_show(value)}; valid choices: {valid}")
    problem = check(value)
    if problem:
        raise ConfigError(f"{where}={_show(value)} ({problem}); valid choices: {valid}")
    return value


def typed_value(key: Key, value: Any, where: str) -> Any:
    """``value`` checked and converted to the type of ``key``'s default."""
    default = key.default
    if isinstance(default, bool):
        return _boolean(where, value)
    if isinstance(default, (int, float)):
        number = _number(where, value, type(default), key.minimum, key.maximum, key.zero)
        return number
    if isinstance(default, list):
        items = [str(v) for v in _list(where, value)]
        for item in items:
            if key.choices and item not in key.choices:
                raise ConfigError(f"{where}: unknown value {_show(item)}; valid "
                                  f"choices: {', '.join(key.choices)}")
        return items
    text = str(value)
    if key.choices and text not in key.choices:
        raise ConfigError(f"{where}={_show(text)}; valid choices: {', '.join(key.choices)}")
    return text


def _empty(name: str, valid: Tuple[str, ...]) -> List[str]:
    raise ConfigError(f"{name} is empty; valid choices: {', '.join(valid)}")


def parse_addr(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ConfigError(f"metrics_addr={_show(text)}: expected HOST:PORT, "
                          "e.g. 127.0.0.1:9464")
    return host.strip("[]"), int(port)


def _table(raw: Mapping[str, Any], name: str) -> Dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a [{name}] table")
    return dict(value)


def _split(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _list(name: str, value: Any) -> List[Any]:
    if isinstance(value, str):
        return _split(value)
    if not isinstance(value, list):
        raise ConfigError(f"{name}: expected a list")
    return value


def _number(name: str, value: Any, kind: type, minimum: Optional[float],
            maximum: Optional[float], zero: str = "") -> Any:
    expected = "an integer" if kind is int else "a number"
    bounds = f" in [{minimum:g}, {maximum:g}]" if minimum is not None and maximum is not None \
        else ""
    off = f" (or 0 {zero})" if zero else ""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise TypeError  # true is not 1, and 2.5 levels is not 2
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}={_show(value)}: expected {expected}{bounds}{off}") \
            from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(f"{name}={_show(value)}: expected a finite number{bounds}")
    if zero and number == 0:
        return number
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ConfigError(f"{name}={_show(value)}: must be{bounds or ' in range'}{off}")
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={_show(value)}: expected true or false")

"""dataflows.config.load_config: defaults, TOML file, environment, one-line errors."""

import os

import pytest

from dataflows.config import Config, ConfigError, VenueConfig, load_config

CB_URL = "wss://advanced-trade-ws.coinbase.com"
DERIBIT_URL = "wss://www.deribit.com/ws/api/v2"
DERIBIT_DEFAULTS = {"interval": "100ms", "depth": 0, "trades": True, "tickers": True}
CB = {"trades": True, "tickers": False}


def _toml(tmp_path, text):
    path = tmp_path / "lobstream.toml"
    path.write_text(text)
    return str(path)


def _error(env):
    with pytest.raises(ConfigError) as ei:
        load_config(env=env)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_defaults():
    cfg = load_config(env={})
    assert cfg == Config(
        venues={"coinbase": VenueConfig(["BTC-USD", "ETH-USD"], CB_URL, CB, 1, instruments="check"),
                "deribit": VenueConfig(["BTC-PERPETUAL", "ETH-PERPETUAL"], DERIBIT_URL,
                                       DERIBIT_DEFAULTS, 100, instruments="check")},
        replay=[], replay_speed=0.0, depth=10, alert_bps=10.0, sinks=["jsonl"], jsonl_dir="out",
        record_dir=None, exit_on_close=False, silence_timeout=30.0)


def test_process_environment_is_read_when_no_env_is_given(tmp_path, monkeypatch):
    """``load_config()`` (the Kafka tools call it so) reads ``os.environ``, also for
    credentials: Deribit, a venue with an API key, is in the defaults."""
    for name in [n for n in os.environ if n.startswith("LOBSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LOBSTREAM_CONFIG", _toml(tmp_path, "[run]\ndepth = 7\n"))
    monkeypatch.setenv("LOBSTREAM_DERIBIT_CLIENT_ID", "id")
    monkeypatch.setenv("LOBSTREAM_DERIBIT_CLIENT_SECRET", "secret")
    monkeypatch.setenv("LOBSTREAM_DERIBIT_INTERVAL", "raw")
    cfg = load_config()
    assert cfg.depth == 7
    assert cfg.venues["deribit"].settings["interval"] == "raw"
    assert cfg.venues["deribit"].credentials is not None


def test_toml_file_and_environment_override(tmp_path):
    path = _toml(tmp_path, """
[run]
venues = ["deribit"]
depth = 5
alert_bps = 2.5
sinks = ["jsonl", "stdout"]
jsonl_dir = "results"
exit_on_close = true

[deribit]
products = ["BTC-PERPETUAL"]
interval = "agg2"
url = "wss://test.deribit.com/ws/api/v2"
products_per_connection = 20
""")
    cfg = load_config(env={"LOBSTREAM_CONFIG": path})
    assert cfg.venues == {"deribit": VenueConfig(["BTC-PERPETUAL"], "wss://test.deribit.com/ws/api/v2",
                                                 dict(DERIBIT_DEFAULTS, interval="agg2"), 20,
                                                 instruments="check")}
    assert (cfg.depth, cfg.alert_bps, cfg.sinks, cfg.jsonl_dir, cfg.exit_on_close) == (
        5, 2.5, ["jsonl", "stdout"], "results", True)

    cfg = load_config(env={"LOBSTREAM_CONFIG": path, "LOBSTREAM_DEPTH": "20",
                           "LOBSTREAM_SINKS": "stdout", "LOBSTREAM_EXIT_ON_CLOSE": "no",
                           "LOBSTREAM_DERIBIT_PRODUCTS": "ETH-PERPETUAL, BTC-PERPETUAL",
                           "LOBSTREAM_DERIBIT_INTERVAL": "100ms",
                           "LOBSTREAM_VENUES": "coinbase,deribit"})
    assert cfg.depth == 20 and cfg.sinks == ["stdout"] and cfg.exit_on_close is False
    assert cfg.alert_bps == 2.5  # not overridden: still from the file
    assert cfg.venues == {
        "coinbase": VenueConfig(["BTC-USD", "ETH-USD"], CB_URL, CB, 1, instruments="check"),
        "deribit": VenueConfig(["ETH-PERPETUAL", "BTC-PERPETUAL"],
                               "wss://test.deribit.com/ws/api/v2", DERIBIT_DEFAULTS, 20,
                               instruments="check")}


def test_venue_table_alone_selects_that_venue(tmp_path):
    path = _toml(tmp_path, '[coinbase]\nproducts = ["SOL-USD"]\n')
    cfg = load_config(env={"LOBSTREAM_CONFIG": path})
    assert cfg.venues == {"coinbase": VenueConfig(["SOL-USD"], CB_URL, CB, 1, instruments="check")}


@pytest.mark.parametrize("env,expected", [
    ({"LOBSTREAM_VENUES": "coinbase,kraken"},
     "venues: unknown value 'kraken'; valid choices: coinbase, deribit, coinbase_exchange, "
     "binance, binance_usdm, binance_coinm"),
    ({"LOBSTREAM_SINKS": "jsonl,parquet"},
     "sinks: unknown value 'parquet'; valid choices: jsonl, stdout, store, sql, kafka"),
    ({"LOBSTREAM_DERIBIT_INTERVAL": "1s"},
     "deribit.interval='1s'; valid choices: 100ms, agg2, raw"),
    ({"LOBSTREAM_DEPTH": "abc"}, "depth='abc': expected an integer in [1, 1000]"),
    ({"LOBSTREAM_DEPTH": "0"}, "depth='0': must be in [1, 1000]"),
    ({"LOBSTREAM_DEPTH": "2.5"}, "depth='2.5': expected an integer in [1, 1000]"),
    ({"LOBSTREAM_ALERT_BPS": "-1"}, "alert_bps='-1': must be in [0, 1e+06]"),
    ({"LOBSTREAM_ALERT_BPS": "nan"}, "alert_bps='nan': expected a finite number in [0, 1e+06]"),
    ({"LOBSTREAM_STATUS_INTERVAL": "1e-300"},
     "status_interval='1e-300': must be in [1, 86400] (or 0 to disable)"),
    ({"LOBSTREAM_SILENCE_TIMEOUT": "inf"},
     "silence_timeout='inf': expected a finite number in [1, 3600]"),
    ({"LOBSTREAM_QUEUE_MB": "1"}, "queue_mb='1': must be in [16, 65536]"),
    ({"LOBSTREAM_COINBASE_URL": "https://advanced-trade-ws.coinbase.com"},
     "coinbase.url='https://advanced-trade-ws.coinbase.com': expected a ws:// or wss:// URL"),
    ({"LOBSTREAM_EXIT_ON_CLOSE": "maybe"}, "exit_on_close='maybe': expected true or false"),
    ({"LOBSTREAM_SINKS": " , "}, "sinks is empty; valid choices: jsonl, stdout, store, sql, kafka"),
    ({"LOBSTREAM_DERIBIT_PRODUCTS_PER_CONNECTION": "501"},
     "deribit.products_per_connection='501': must be in [1, 500]"),
    ({"LOBSTREAM_METRICS_ADDR": "localhost"},
     "metrics_addr='localhost': expected HOST:PORT, e.g. 127.0.0.1:9464"),
    ({"LOBSTREAM_DEPHT": "5"}, "unknown environment variable LOBSTREAM_DEPHT; did you mean "
                               "LOBSTREAM_DEPTH?"),
], ids=["venue", "sink", "interval_1s", "depth_abc", "depth_0", "depth_float", "alert_negative",
        "alert_nan", "status_tiny", "silence_inf", "queue", "url", "boolean", "no_sinks",
        "per_connection", "metrics_addr", "misspelt_variable"])
def test_env_errors(env, expected):
    assert _error(env) == expected


@pytest.mark.parametrize("product,expected", [
    ("BTC/USD", "coinbase.products: product name 'BTC/USD' contains '/', '\\' or '..'"),
    ("..", "coinbase.products: product name '..' contains '/', '\\' or '..'"),
    ("BTC-USD\nINFO forged", "coinbase.products: product name 'BTC-USD\\nINFO forged' "
                             "contains blanks or control characters"),
    ("A" * 300, None),
], ids=["slash", "dots", "newline", "long"])
def test_product_names_are_validated_per_venue(product, expected):
    msg = _error({"LOBSTREAM_COINBASE_PRODUCTS": product})
    assert "\n" not in msg and len(msg) < 200
    if expected is not None:
        assert msg == expected


def test_rules_from_the_file_and_the_environment(tmp_path):
    path = _toml(tmp_path, '[deribit]\nrules = [{kind = "option", base = "BTC", '
                           'expires_within = "7d"}]\n')
    cfg = load_config(env={"LOBSTREAM_CONFIG": path})
    venue = cfg.venues["deribit"]
    assert venue.products == [] and len(venue.rules) == 1 and venue.refresh == 3600.0
    cfg = load_config(env={"LOBSTREAM_DERIBIT_RULES": '[{"kind": "perpetual"}]',
                           "LOBSTREAM_DERIBIT_PRODUCTS": "BTC-PERPETUAL"})
    assert cfg.venues["deribit"].products == ["BTC-PERPETUAL"]
    assert _error({"LOBSTREAM_DERIBIT_RULES": "[{"}).startswith("deribit.rules: expected JSON")
    assert _error({"LOBSTREAM_DERIBIT_RULES": '[{"kind": "perpetual"}]',
                   "LOBSTREAM_DERIBIT_INSTRUMENTS": "off"}) == (
        "deribit.rules need the instrument list; set deribit.instruments to check or require")
    assert _error({"LOBSTREAM_DERIBIT_INSTRUMENTS": "maybe"}) == (
        "deribit.instruments='maybe'; valid choices: check, require, off")
    assert _error({"LOBSTREAM_DERIBIT_RULES": '[{"color": "red"}]'}).startswith("deribit")


def test_script_variables_are_not_config():
    assert load_config(env={"LOBSTREAM_DEMO_SPEED": "1", "LOBSTREAM_SOAK_SECONDS": "5"})


def test_raw_interval_without_credentials_names_what_to_set(tmp_path):
    path = _toml(tmp_path, '[deribit]\ninterval = "raw"\n')
    msg = _error({"LOBSTREAM_CONFIG": path})
    assert msg == ("deribit.interval='raw' needs Deribit API credentials: set "
                   "LOBSTREAM_DERIBIT_CLIENT_ID and LOBSTREAM_DERIBIT_CLIENT_SECRET, or name a "
                   "file holding client_id and client_secret in deribit.credentials_file; "
                   "without them use 100ms, agg2")


def test_grouped_book_depth_bounds_the_imbalance_depth(tmp_path):
    path = _toml(tmp_path, '[deribit]\ndepth = 10\n[run]\ndepth = 20\n')
    assert _error({"LOBSTREAM_CONFIG": path}) == (
        "run.depth=20 exceeds deribit.depth=10: a depth-limited book has only 10 levels per side")
    assert _error({"LOBSTREAM_DERIBIT_DEPTH": "5"}) == (
        "deribit.depth=5; valid choices: 0, 1, 10, 20")
    cfg = load_config(env={"LOBSTREAM_DERIBIT_DEPTH": "10"})
    assert cfg.venues["deribit"].settings == dict(DERIBIT_DEFAULTS, depth=10)


@pytest.mark.parametrize("text,expected", [
    ("[run]\ndepht = 5\n", "[run]: unknown key 'depht'; did you mean depth?"),
    ('[coinbase]\ninterval = "100ms"\n',
     "[coinbase]: unknown key 'interval'; valid keys: products, url, products_per_connection, "
     "rules, instruments, refresh, rest_url, trades, tickers"),
    ("[replay]\npath = 'x'\n", "[replay]: unknown key 'path'; did you mean paths?"),
    ("[kraken]\nproducts = ['XBT/USD']\n",
     "config file: unknown key 'kraken'; valid keys: run, replay, bars, store, sql, kafka, "
     "coinbase, deribit, coinbase_exchange, binance, binance_usdm, binance_coinm"),
    ("[run]\ndepth = 0\n", "depth=0: must be in [1, 1000]"),
    ('[run]\nsinks = ["console"]\n',
     "sinks: unknown value 'console'; valid choices: jsonl, stdout, store, sql, kafka"),
    ('[deribit]\nurl = "deribit.com"\n', "deribit.url='deribit.com': expected a ws:// or wss:// URL"),
    ('[deribit]\nproducts = ["BTC-PERPETUAL", "BTC-PERPETUAL"]\n',
     "deribit.products lists a product twice"),
], ids=["run_key", "venue_key", "replay_key", "table", "depth_0", "sink", "url", "twice"])
def test_file_errors(tmp_path, text, expected):
    assert _error({"LOBSTREAM_CONFIG": _toml(tmp_path, text)}) == expected


def test_unreadable_and_invalid_files(tmp_path):
    missing = tmp_path / "nope.toml"
    msg = _error({"LOBSTREAM_CONFIG": str(missing)})
    assert msg.startswith(f"LOBSTREAM_CONFIG={missing}: cannot read (")
    msg = _error({"LOBSTREAM_CONFIG": _toml(tmp_path, "[run\ndepth = 1\n")})
    assert msg.startswith(f"LOBSTREAM_CONFIG={tmp_path / 'lobstream.toml'}: invalid TOML (")


def test_missing_replay_path(tmp_path):
    missing = tmp_path / "missing.jsonl"
    assert _error({"LOBSTREAM_REPLAY": str(missing)}) == f"replay path {str(missing)!r} does not exist"


def test_replay_mode_ignores_venue_tables_but_still_checks_them(tmp_path):
    capture = tmp_path / "a.jsonl"
    capture.write_text("")
    env = {"LOBSTREAM_REPLAY": f"{capture}, {tmp_path}", "LOBSTREAM_REPLAY_SPEED": "2",
           "LOBSTREAM_DERIBIT_PRODUCTS": "BTC-PERPETUAL"}
    cfg = load_config(env=env)
    assert cfg.replay == [str(capture), str(tmp_path)]
    assert cfg.replay_speed == 2.0
    assert cfg.venues == {}
    assert _error(dict(env, LOBSTREAM_VENUES="kraken")).startswith("venues: unknown value 'kraken'")


def test_replay_from_file_with_negative_speed(tmp_path):
    capture = tmp_path / "a.jsonl"
    capture.write_text("")
    path = _toml(tmp_path, f'[replay]\npaths = ["{capture}"]\nspeed = -1\n')
    assert _error({"LOBSTREAM_CONFIG": path}) == ("replay.speed=-1: must be in [0.001, 1e+06] "
                                                  "(or 0 for as fast as possible)")

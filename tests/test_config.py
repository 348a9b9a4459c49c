"""dataflows.config.load_config: defaults, TOML file, environment, one-line errors."""

import pytest

from dataflows.config import Config, ConfigError, VenueConfig, load_config

CB_URL = "wss://advanced-trade-ws.coinbase.com"
DERIBIT_URL = "wss://www.deribit.com/ws/api/v2"


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
        venues={"coinbase": VenueConfig(["BTC-USD", "ETH-USD"], CB_URL, ""),
                "deribit": VenueConfig(["BTC-PERPETUAL", "ETH-PERPETUAL"], DERIBIT_URL, "100ms")},
        replay=[], replay_speed=0.0, depth=10, alert_bps=10.0, sinks=["jsonl"], jsonl_dir="out",
        record_dir=None, exit_on_close=False, silence_timeout=30.0)


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
""")
    cfg = load_config(env={"LOBSTREAM_CONFIG": path})
    assert cfg.venues == {"deribit": VenueConfig(["BTC-PERPETUAL"], "wss://test.deribit.com/ws/api/v2",
                                                 "agg2")}
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
        "coinbase": VenueConfig(["BTC-USD", "ETH-USD"], CB_URL, ""),
        "deribit": VenueConfig(["ETH-PERPETUAL", "BTC-PERPETUAL"],
                               "wss://test.deribit.com/ws/api/v2", "100ms")}


def test_venue_table_alone_selects_that_venue(tmp_path):
    path = _toml(tmp_path, '[coinbase]\nproducts = ["SOL-USD"]\n')
    cfg = load_config(env={"LOBSTREAM_CONFIG": path})
    assert cfg.venues == {"coinbase": VenueConfig(["SOL-USD"], CB_URL, "")}


@pytest.mark.parametrize("env,expected", [
    ({"LOBSTREAM_VENUES": "coinbase,kraken"},
     "venues: unknown value 'kraken'; valid choices: coinbase, deribit, coinbase_exchange"),
    ({"LOBSTREAM_SINKS": "jsonl,parquet"},
     "sinks: unknown value 'parquet'; valid choices: jsonl, stdout"),
    ({"LOBSTREAM_DERIBIT_INTERVAL": "1s"},
     "deribit.interval='1s'; valid choices: 100ms, agg2"),
    ({"LOBSTREAM_DEPTH": "abc"}, "depth='abc': expected an integer >= 1"),
    ({"LOBSTREAM_DEPTH": "0"}, "depth='0': must be >= 1"),
    ({"LOBSTREAM_ALERT_BPS": "-1"}, "alert_bps='-1': must be >= 0"),
    ({"LOBSTREAM_ALERT_BPS": "nan"}, "alert_bps='nan': must be >= 0"),
    ({"LOBSTREAM_COINBASE_URL": "https://advanced-trade-ws.coinbase.com"},
     "coinbase.url='https://advanced-trade-ws.coinbase.com': expected a ws:// or wss:// URL"),
    ({"LOBSTREAM_EXIT_ON_CLOSE": "maybe"}, "exit_on_close='maybe': expected true or false"),
    ({"LOBSTREAM_VENUES": " , "}, "venues is empty; valid choices: coinbase, deribit, coinbase_exchange"),
], ids=["venue", "sink", "interval_1s", "depth_abc", "depth_0", "alert_negative", "alert_nan",
        "url", "boolean", "no_venues"])
def test_env_errors(env, expected):
    assert _error(env) == expected


def test_raw_interval_explains_why(tmp_path):
    path = _toml(tmp_path, '[deribit]\ninterval = "raw"\n')
    msg = _error({"LOBSTREAM_CONFIG": path})
    assert msg == ("deribit.interval='raw' (raw books need authentication, which lobstream "
                   "does not do); valid choices: 100ms, agg2")


@pytest.mark.parametrize("text,expected", [
    ("[run]\ndepht = 5\n",
     # (later options may extend the list of valid keys)
     "[run]: unknown key 'depht'; valid keys: venues, depth, alert_bps, sinks, jsonl_dir, "
     "record_dir, exit_on_close, silence_timeout*"),
    ('[coinbase]\ninterval = "100ms"\n',
     "[coinbase]: unknown key 'interval'; valid keys: products, url"),
    ("[replay]\npath = 'x'\n", "[replay]: unknown key 'path'; valid keys: paths, speed"),
    ("[kraken]\nproducts = ['XBT/USD']\n",
     "config file: unknown key 'kraken'; valid keys: run, replay, coinbase, deribit, coinbase_exchange"),
    ("[run]\ndepth = 0\n", "depth=0: must be >= 1"),
    ('[run]\nsinks = ["console"]\n', "sinks: unknown value 'console'; valid choices: jsonl, stdout"),
    ('[deribit]\nurl = "deribit.com"\n', "deribit.url='deribit.com': expected a ws:// or wss:// URL"),
], ids=["run_key", "venue_key", "replay_key", "table", "depth_0", "sink", "url"])
def test_file_errors(tmp_path, text, expected):
    msg = _error({"LOBSTREAM_CONFIG": _toml(tmp_path, text)})
    if expected.endswith("*"):
        assert msg.startswith(expected[:-1])
    else:
        assert msg == expected


def test_unreadable_and_invalid_files(tmp_path):
    missing = tmp_path / "nope.toml"
    msg = _error({"LOBSTREAM_CONFIG": str(missing)})
    assert msg.startswith(f"LOBSTREAM_CONFIG={missing}: cannot read (")
    msg = _error({"LOBSTREAM_CONFIG": _toml(tmp_path, "[run\ndepth = 1\n")})
    assert msg.startswith(f"LOBSTREAM_CONFIG={tmp_path / 'lobstream.toml'}: invalid TOML (")


def test_missing_replay_path(tmp_path):
    missing = tmp_path / "missing.jsonl"
    assert _error({"LOBSTREAM_REPLAY": str(missing)}) == f"replay path {str(missing)!r} does not exist"


def test_replay_mode_ignores_venues(tmp_path):
    capture = tmp_path / "a.jsonl"
    capture.write_text("")
    env = {"LOBSTREAM_REPLAY": f"{capture}, {tmp_path}", "LOBSTREAM_REPLAY_SPEED": "2",
           "LOBSTREAM_VENUES": "kraken", "LOBSTREAM_DERIBIT_INTERVAL": "raw"}
    cfg = load_config(env=env)
    assert cfg.replay == [str(capture), str(tmp_path)]
    assert cfg.replay_speed == 2.0
    assert cfg.venues == {}


def test_replay_from_file_with_negative_speed(tmp_path):
    capture = tmp_path / "a.jsonl"
    capture.write_text("")
    path = _toml(tmp_path, f'[replay]\npaths = ["{capture}"]\nspeed = -1\n')
    assert _error({"LOBSTREAM_CONFIG": path}) == "replay.speed=-1: must be >= 0"

"""Credentials without a network: where they may come from, how they are shown (never),
how frames carrying them are redacted, and how each venue's protocol uses them.

The websocket runs against the simulator, and the search of an authenticated run's
logs, captures and metrics for the secrets, are in ``tests/test_auth_feeds.py``.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
from typing import Any, Dict, List

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from dataflows.config import ConfigError, load_config
from sources.feed.feed import Feed
from sources.feed.reporting import BadInput, ErrorReplies
from sources.venues import coinbase_exchange as cx, deribit, get_venue
from sources.venues.base import ERROR, REPLY, no_redaction
from sources.venues.credentials import CREDENTIALS, REDACTED, Credentials, Redaction, Secret
from state.events import BookStatus

SECRET = "Sup3r-s3cret-value"
CLIENT_ID = "client-id-abc"
DERIBIT = Credentials("deribit", {"client_id": CLIENT_ID, "client_secret": SECRET}, "test")
#: A base64 secret, as Coinbase shows it.
CX_SECRET = "c2ltdWxhdG9yIHNlY3JldA=="
CX = Credentials("coinbase_exchange", {"key": "key-123", "secret": CX_SECRET,
                                       "passphrase": "pass phrase"}, "test")
DERIBIT_ENV = {"LOBSTREAM_VENUES": "deribit", "LOBSTREAM_DERIBIT_CLIENT_ID": CLIENT_ID,
               "LOBSTREAM_DERIBIT_CLIENT_SECRET": SECRET}


# ----------------------------------------------------------------- never shown

def test_secret_never_shows_its_value():
    s = Secret(SECRET)
    shown = [repr(s), str(s), f"{s}", f"{s!r}", f"{s:>30}", "%s %r" % (s, s), repr([s]),
             repr(DERIBIT), repr(deribit.Grant(s, s, 900.0, 1.0))]
    assert not any(SECRET in text for text in shown)
    assert s.reveal() == SECRET and s == Secret(SECRET) and s != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        pickle.dumps(DERIBIT)
    with pytest.raises(TypeError):
        copy.deepcopy({"settings": {CREDENTIALS: DERIBIT}})


def test_a_loaded_configuration_shows_no_secret():
    cfg = load_config(env={**DERIBIT_ENV, "LOBSTREAM_DERIBIT_INTERVAL": "raw"})
    assert cfg.venues["deribit"].credentials == DERIBIT
    assert SECRET not in repr(cfg) and CLIENT_ID not in repr(cfg)
    assert repr(cfg.venues["deribit"].credentials) == (
        "Credentials(deribit: client_id, client_secret from the environment)")


# ----------------------------------------------------------------- configuration

def _toml(tmp_path, text: str, name: str = "lobstream.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _error(env: Dict[str, str]) -> str:
    with pytest.raises(ConfigError) as ei:
        load_config(env=env)
    msg = str(ei.value)
    assert "\n" not in msg
    assert SECRET not in msg and CLIENT_ID not in msg and CX_SECRET not in msg
    return msg


def test_raw_and_level2_are_allowed_with_credentials():
    cfg = load_config(env={**DERIBIT_ENV, "LOBSTREAM_DERIBIT_INTERVAL": "raw"})
    assert cfg.venues["deribit"].settings["interval"] == "raw"
    cfg = load_config(env={"LOBSTREAM_VENUES": "coinbase_exchange",
                           "LOBSTREAM_COINBASE_EXCHANGE_CHANNEL": "level2",
                           "LOBSTREAM_COINBASE_EXCHANGE_KEY": "key-123",
                           "LOBSTREAM_COINBASE_EXCHANGE_SECRET": CX_SECRET,
                           "LOBSTREAM_COINBASE_EXCHANGE_PASSPHRASE": "pass phrase"})
    assert cfg.venues["coinbase_exchange"].credentials == CX


def test_credentials_of_a_venue_not_run_are_not_read():
    cfg = load_config(env={"LOBSTREAM_VENUES": "coinbase", "LOBSTREAM_DERIBIT_CLIENT_ID": "x"})
    assert list(cfg.venues) == ["coinbase"]


@pytest.mark.parametrize("env,expected", [
    ({"LOBSTREAM_VENUES": "deribit", "LOBSTREAM_DERIBIT_CLIENT_ID": CLIENT_ID},
     "Deribit credentials are incomplete: client_secret missing; set LOBSTREAM_DERIBIT_CLIENT_ID "
     "and LOBSTREAM_DERIBIT_CLIENT_SECRET, or name a file holding client_id and client_secret "
     "in deribit.credentials_file"),
    ({**DERIBIT_ENV, "LOBSTREAM_DERIBIT_CLIENT_SECRET": ""},
     "LOBSTREAM_DERIBIT_CLIENT_SECRET is empty"),
    ({**DERIBIT_ENV, "LOBSTREAM_DERIBIT_CLIENT_SECRET": SECRET + "\n"},
     "LOBSTREAM_DERIBIT_CLIENT_SECRET has leading or trailing blanks"),
    ({"LOBSTREAM_VENUES": "deribit", "LOBSTREAM_DERIBIT_CLIENT_SECRT": SECRET},
     "unknown environment variable LOBSTREAM_DERIBIT_CLIENT_SECRT; did you mean "
     "LOBSTREAM_DERIBIT_CLIENT_SECRET?"),
    ({"LOBSTREAM_VENUES": "coinbase_exchange", "LOBSTREAM_COINBASE_EXCHANGE_KEY": "key-123",
      "LOBSTREAM_COINBASE_EXCHANGE_SECRET": SECRET,
      "LOBSTREAM_COINBASE_EXCHANGE_PASSPHRASE": "p"},
     "LOBSTREAM_COINBASE_EXCHANGE_SECRET is not base64: Coinbase shows the API secret "
     "base64-encoded, paste it unchanged"),
], ids=["incomplete", "empty", "blanks", "misspelt", "not_base64"])
def test_credential_errors_are_one_line_without_the_value(env, expected):
    assert _error(env) == expected


def test_a_secret_in_the_configuration_file_says_where_to_put_it(tmp_path):
    path = _toml(tmp_path, f'[deribit]\nclient_secret = "{SECRET}"\n')
    assert _error({"LOBSTREAM_CONFIG": path}) == (
        "[deribit] client_secret: secrets are not read from the configuration file; set "
        "LOBSTREAM_DERIBIT_CLIENT_SECRET or put it in the file named by "
        "deribit.credentials_file")


def test_credentials_file_and_environment(tmp_path, caplog):
    creds = tmp_path / "deribit.toml"
    creds.write_text(f'client_id = "{CLIENT_ID}"\nclient_secret = "{SECRET}"\n')
    os.chmod(creds, 0o600)
    config = _toml(tmp_path, f'[deribit]\ninterval = "raw"\ncredentials_file = "{creds}"\n')
    with caplog.at_level(logging.WARNING, logger="lobstream.config"):
        cfg = load_config(env={"LOBSTREAM_CONFIG": config})
    assert cfg.venues["deribit"].credentials == DERIBIT and not caplog.records
    assert cfg.venues["deribit"].credentials.origin == str(creds)
    # A variable overrides the file's value.
    cfg = load_config(env={"LOBSTREAM_CONFIG": config, "LOBSTREAM_DERIBIT_CLIENT_SECRET": "other"})
    assert cfg.venues["deribit"].credentials.reveal("client_secret") == "other"
    assert cfg.venues["deribit"].credentials.origin == f"{creds} and the environment"
    # Readable by others: used, with one warning naming the file and the fix.
    os.chmod(creds, 0o644)
    with caplog.at_level(logging.WARNING, logger="lobstream.config"):
        load_config(env={"LOBSTREAM_DERIBIT_CREDENTIALS_FILE": str(creds),
                         "LOBSTREAM_VENUES": "deribit"})
    assert [r.getMessage() for r in caplog.records] == [
        f"deribit.credentials_file {creds} can be read by group or others (mode 644): "
        "chmod 600 it"]


@pytest.mark.parametrize("text,expected", [
    (f'client_id = "{CLIENT_ID}"\nclient_secret = "{SECRET}\n', "not valid TOML (at line 2, "),
    (f'client_id = "{CLIENT_ID}"\nclient_secert = "{SECRET}"\n',
     "unknown key 'client_secert'; did you mean client_secret?"),
    (f'client_id = "{CLIENT_ID}"\nclient_secret = 12345\n', "client_secret must be a string"),
    (f'client_id = "{CLIENT_ID}"\n', "Deribit credentials are incomplete: client_secret missing"),
], ids=["toml", "unknown_key", "not_string", "incomplete"])
def test_credentials_file_errors(tmp_path, text, expected):
    path = _toml(tmp_path, text, "deribit.toml")
    os.chmod(path, 0o600)
    assert expected in _error({"LOBSTREAM_VENUES": "deribit",
                               "LOBSTREAM_DERIBIT_CREDENTIALS_FILE": path})


def test_missing_credentials_file(tmp_path):
    missing = tmp_path / "nope.toml"
    assert _error({"LOBSTREAM_VENUES": "deribit", "LOBSTREAM_DERIBIT_CREDENTIALS_FILE":
                   str(missing)}) == (f"deribit.credentials_file {missing}: cannot read it "
                                      "(No such file or directory)")


# ----------------------------------------------------------------- redaction

KEYS = sorted(deribit.REDACTION.keys)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_docs = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def _plant(doc: Any, where: List[int], key: str, value: str) -> Any:
    """``doc`` with ``{key: value}`` put into a dict at a position ``where`` picks."""
    if isinstance(doc, dict) and (not where or where[0] % 3 == 0 or not doc):
        return {**doc, key: value}
    if isinstance(doc, dict):
        k = sorted(doc)[where[0] % len(doc)]
        return {**doc, k: _plant(doc[k], where[1:], key, value)}
    if isinstance(doc, list) and doc and where:
        i = where[0] % len(doc)
        return doc[:i] + [_plant(doc[i], where[1:], key, value)] + doc[i + 1:]
    return {"wrapped": doc, key: value}


@settings(max_examples=300, deadline=None)
@given(json_docs, st.lists(st.integers(0, 50), max_size=6), st.sampled_from(KEYS),
       st.sampled_from([True, False]))
def test_redaction_removes_every_planted_secret_and_nothing_else(doc, where, key, as_text):
    planted = _plant(doc, where, key, SECRET)
    frame = orjson.dumps(planted)
    out = deribit.REDACTION(frame.decode() if as_text else frame)
    assert isinstance(out, str) is as_text
    assert SECRET not in (out if as_text else out.decode())
    assert orjson.loads(out) == orjson.loads(orjson.dumps(_plant(doc, where, key, REDACTED)))


@settings(max_examples=200, deadline=None)
@given(json_docs)
def test_frames_without_a_needle_are_the_same_object(doc):
    frame = orjson.dumps(doc)
    if b"_token" not in frame and b"client_" not in frame:
        assert deribit.REDACTION(frame) is frame


def test_redaction_of_frames_that_are_not_json():
    cut = deribit.REDACTION(b'{"jsonrpc":"2.0","id":5,"result":{"access_token":"' + SECRET.encode())
    assert cut == b'{"jsonrpc":"2.0","id":5,"result":{"access' + REDACTED.encode()
    assert deribit.REDACTION('x "refresh_token": ' + SECRET) == 'x "refresh' + REDACTED
    deep = b'{"client_id":"' + CLIENT_ID.encode() + b'","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert CLIENT_ID.encode() not in deribit.REDACTION(deep)
    # Decodable, deeper than a recursive walk could go and than orjson encodes.
    nested = b'{"a":' * 1000 + b'{"client_secret":"' + SECRET.encode() + b'"}' + b"}" * 1000
    assert deribit.REDACTION(nested) == b'{"a":' * 1000 + b'{"' + REDACTED.encode()
    # A needle in a value, not a key: nothing to redact.
    text = b'{"method":"public/auth","params":{"grant_type":"client_credentials"}}'
    assert deribit.REDACTION(text) is text


def test_each_venue_declares_its_redaction():
    signed = orjson.dumps({"type": "subscribe", "channels": ["level2"],
                           **cx.signed(CX, "1700000000")})
    out = orjson.loads(get_venue("coinbase_exchange").redact(signed))
    assert (out["key"], out["passphrase"], out["signature"]) == (REDACTED,) * 3
    assert out["timestamp"] == "1700000000"
    assert get_venue("coinbase").redact is no_redaction
    assert get_venue("deribit").redact is deribit.REDACTION
    assert Redaction(["a"])(b'{"b":1}') == b'{"b":1}'


# ----------------------------------------------------------------- Deribit protocol

def _grant_frame(ident: int, access: str, refresh: str, expires_in: int = 900) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": ident, "result": {
        "access_token": access, "refresh_token": refresh, "expires_in": expires_in,
        "scope": "connection", "token_type": "bearer"}})


def test_parser_turns_an_auth_answer_into_a_grant():
    parsed = deribit.parse(_grant_frame(7, "AT", "RT", 900), 1_700_000_000_000.0)
    assert (parsed.kind, parsed.ref) == (REPLY, 7)
    assert parsed.events == [deribit.Grant(Secret("AT"), Secret("RT"), 900.0, 1_700_000_000_000.0)]
    bad = deribit.parse(orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": {
        "access_token": "AT", "refresh_token": "RT", "expires_in": "soon"}}), 1.0)
    assert (bad.kind, bad.ref, bad.code) == (ERROR, 7, "bad_grant")
    assert "AT" not in bad.detail and "RT" not in bad.detail


def test_authentication_comes_first_and_holds_the_subscriptions_back():
    proto = deribit.DeribitProtocol({"interval": "raw", CREDENTIALS: DERIBIT})
    heartbeat, auth = proto.open(["BTC-PERPETUAL"])
    assert heartbeat["method"] == "public/set_heartbeat"
    assert auth["method"] == "public/auth" and auth["params"] == {
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
    assert proto.subscribe(["ETH-PERPETUAL"]) == [] and proto.resubscribe("BTC-PERPETUAL") == []
    grant = deribit.parse(_grant_frame(auth["id"], "AT1", "RT1", 900), 1000.0)
    reply = proto.reply(grant.ref, grant.events)
    assert [m["params"]["channels"] for m in reply.send] == [[
        "book.BTC-PERPETUAL.raw", "trades.BTC-PERPETUAL.raw", "ticker.BTC-PERPETUAL.100ms",
        "book.ETH-PERPETUAL.raw", "trades.ETH-PERPETUAL.raw", "ticker.ETH-PERPETUAL.100ms"]]
    assert "AT1" not in repr(vars(proto)) and SECRET not in repr(vars(proto))
    # Refreshed at 80 % of the lifetime, once, with the refresh token.
    assert proto.due(1000.0 + 719_000) == []
    refresh, = proto.due(1000.0 + 720_000)
    assert refresh["params"] == {"grant_type": "refresh_token", "refresh_token": "RT1"}
    assert proto.due(1000.0 + 721_000) == []  # in flight
    again = deribit.parse(_grant_frame(refresh["id"], "AT2", "RT2", 900), 730_000.0)
    assert proto.reply(again.ref, again.events).send == []
    assert proto.due(730_000.0 + 719_000) == []
    assert proto.due(730_000.0 + 720_000)[0]["params"]["refresh_token"] == "RT2"


@pytest.mark.parametrize("lifetime,refresh_after", [(900, 720.0), (10, 7.0), (4, 2.0), (1, 0.5)])
def test_short_tokens_are_refreshed_with_time_to_spare(lifetime, refresh_after):
    proto = deribit.DeribitProtocol({CREDENTIALS: DERIBIT})
    _, auth = proto.open(["BTC-PERPETUAL"])
    grant = deribit.parse(_grant_frame(auth["id"], "A", "R", lifetime), 0.0)
    proto.reply(grant.ref, grant.events)
    assert proto.due(refresh_after * 1000 - 1) == [] and proto.due(refresh_after * 1000)


def test_refused_authentication_refuses_the_products_and_stops():
    proto = deribit.DeribitProtocol({CREDENTIALS: DERIBIT})
    _, auth = proto.open(["BTC-PERPETUAL", "ETH-PERPETUAL"])
    assert proto.refused(auth["id"], "13004 invalid_credentials") == [
        "BTC-PERPETUAL", "ETH-PERPETUAL"]
    assert all(proto.due(t) == [] for t in (0.0, 1e6, 1e9))


def test_a_refused_refresh_falls_back_on_the_credentials_once():
    proto = deribit.DeribitProtocol({CREDENTIALS: DERIBIT})
    _, auth = proto.open(["BTC-PERPETUAL"])
    grant = deribit.parse(_grant_frame(auth["id"], "A", "R", 10), 0.0)
    proto.reply(grant.ref, grant.events)
    refresh, = proto.due(7000.0)
    assert proto.refused(refresh["id"], "13009 unauthorized") is None  # products stay
    again, = proto.due(8000.0)
    assert again["params"]["grant_type"] == "client_credentials"
    assert proto.refused(again["id"], "13004 invalid_credentials") is None
    assert all(proto.due(t) == [] for t in (9000.0, 20_000.0, 1e9))  # no storm


def test_an_unanswered_authentication_is_sent_again_after_its_timeout():
    proto = deribit.DeribitProtocol({CREDENTIALS: DERIBIT})
    _, auth = proto.open(["BTC-PERPETUAL"])
    assert proto.due(0.0) == [] and proto.due(deribit.AUTH_TIMEOUT_MS - 1) == []
    again, = proto.due(deribit.AUTH_TIMEOUT_MS)
    assert again["id"] != auth["id"] and again["params"]["grant_type"] == "client_credentials"


def test_without_credentials_nothing_changes():
    proto = deribit.DeribitProtocol({})
    heartbeat, sub = proto.open(["BTC-PERPETUAL"])
    assert sub["method"] == "public/subscribe" and proto.due(1e12) == []


def _feed(venue: str, products: List[str], settings: Dict[str, Any]) -> Feed:
    return Feed(get_venue(venue), products, BadInput(), settings=settings, errors=ErrorReplies())


def test_feed_sends_subscriptions_with_the_grant_and_refreshes_from_tick():
    feed = _feed("deribit", ["BTC-PERPETUAL"], {CREDENTIALS: DERIBIT})
    _, auth = feed.connected(0.0)
    out: List[Any] = []
    feed.on_frame(_grant_frame(auth["id"], "A", "R", 10), 100.0, out)
    assert [m["method"] for m in feed.outbox] == ["public/subscribe"]
    assert feed.counts["auth_grants"] == 1
    feed.outbox.clear()
    feed.tick(7099.0)
    assert feed.outbox == []
    feed.tick(7100.0)
    assert [m["params"]["grant_type"] for m in feed.outbox] == ["refresh_token"]


def test_feed_turns_an_auth_error_into_refused_books_and_one_line(caplog):
    feed = _feed("deribit", ["BTC-PERPETUAL", "ETH-PERPETUAL"], {CREDENTIALS: DERIBIT})
    _, auth = feed.connected(0.0)
    out: List[Any] = []
    error = orjson.dumps({"jsonrpc": "2.0", "id": auth["id"],
                          "error": {"code": 13004, "message": "invalid_credentials"}})
    with caplog.at_level(logging.ERROR, logger="lobstream.feed"):
        feed.on_frame(error, 5.0, out)
    assert [(k, s.reason) for k, s in out] == [("deribit:BTC-PERPETUAL", "refused"),
                                              ("deribit:ETH-PERPETUAL", "refused")]
    assert all(isinstance(s, BookStatus) for _, s in out) and feed.wanted == []
    line, = [r.getMessage() for r in caplog.records]
    assert "13004 invalid_credentials" in line and "LOBSTREAM_DERIBIT_CLIENT_SECRET" in line


def test_bad_frame_samples_are_redacted(caplog):
    feed = _feed("deribit", ["BTC-PERPETUAL"], {CREDENTIALS: DERIBIT})
    broken = b'{"jsonrpc":"2.0","id":2,"result":{"access_token":"' + SECRET.encode() + b'",'
    with caplog.at_level(logging.WARNING, logger="lobstream.input"):
        feed.on_frame(broken, 1.0, [])
    line, = [r.getMessage() for r in caplog.records]
    assert "malformed" in line and REDACTED in line and SECRET not in line


# ----------------------------------------------------------------- Coinbase Exchange protocol

def test_coinbase_exchange_signs_every_subscribe_and_nothing_else():
    proto = cx.CoinbaseExchangeProtocol({"channel": "level2", "trades": False, CREDENTIALS: CX})
    proto.clock = lambda: 1_700_000_000.4
    opened, = proto.open(["BTC-USD"])
    assert opened["timestamp"] == "1700000000" and opened["key"] == "key-123"
    assert opened["signature"] == cx.signature(CX_SECRET, "1700000000")
    unsub, sub = proto.resubscribe("BTC-USD")
    assert "signature" not in unsub and sub["signature"] == opened["signature"]
    plain, = cx.CoinbaseExchangeProtocol({}).open(["BTC-USD"])
    assert not {"signature", "key", "passphrase", "timestamp"} & set(plain)


def test_the_authenticated_example_needs_only_the_secrets(tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "authenticated.toml")
    creds = tmp_path / "deribit.toml"
    creds.write_text(f'client_id = "{CLIENT_ID}"\nclient_secret = "{SECRET}"\n')
    creds.chmod(0o600)
    env = {"LOBSTREAM_CONFIG": example, "LOBSTREAM_DERIBIT_CREDENTIALS_FILE": str(creds),
           "LOBSTREAM_DERIBIT_INSTRUMENTS": "off", "LOBSTREAM_COINBASE_EXCHANGE_INSTRUMENTS": "off"}
    assert _error(env).startswith("coinbase_exchange.channel='level2' needs Coinbase Exchange")
    cfg = load_config(env={**env, "LOBSTREAM_COINBASE_EXCHANGE_KEY": "key-123",
                           "LOBSTREAM_COINBASE_EXCHANGE_SECRET": CX_SECRET,
                           "LOBSTREAM_COINBASE_EXCHANGE_PASSPHRASE": "pass phrase"})
    assert (cfg.venues["deribit"].credentials, cfg.venues["coinbase_exchange"].credentials) == (
        DERIBIT, CX)


def test_a_new_connection_forgets_the_tokens_and_authenticates_again():
    proto = deribit.DeribitProtocol({CREDENTIALS: DERIBIT})
    _, auth = proto.open(["BTC-PERPETUAL"])
    grant = deribit.parse(_grant_frame(auth["id"], "A", "R", 900), 0.0)
    assert proto.reply(grant.ref, grant.events).send
    proto.reset()
    assert not proto.authenticated and proto.due(1e9) == []
    _, again = proto.open(["BTC-PERPETUAL"])
    assert again["params"]["grant_type"] == "client_credentials"
    assert proto.subscribe(["ETH-PERPETUAL"]) == []  # held back until the new grant


def test_converted_captures_are_redacted_too(tmp_path):
    from sources.capture.convert import convert
    from sources.capture.format import read_capture
    src = tmp_path / "DERIBIT-abc123.0"
    auth = {"jsonrpc": "2.0", "id": 1, "method": "public/auth", "params": {
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}}
    src.write_text("wss://www.deribit.com/ws/api/v2 <-> 1617644856.0\n"
                   f"wss://www.deribit.com/ws/api/v2 <- 1617644856.5: {orjson.dumps(auth).decode()}\n"
                   f"1617644857.0: {_grant_frame(1, 'TOKEN-A', 'TOKEN-R').decode()}\n")
    convert(src, tmp_path / "out.jsonl")
    text = (tmp_path / "out.jsonl").read_text()
    assert not any(s in text for s in (CLIENT_ID, SECRET, "TOKEN-A", "TOKEN-R"))
    sent, answer = [f.msg for f in read_capture(tmp_path / "out.jsonl")]
    assert sent["params"]["client_secret"] == answer["result"]["access_token"] == REDACTED

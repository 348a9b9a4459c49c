"""Coinbase Exchange: the parser on the bundled real level2 recording, its
configuration, the simulator's ``/coinbase-exchange`` protocol, and the real
dataflow over websockets (refused ``level2``; ``level2_batch`` equal to the replay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Optional

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from dataflows.config import Config, ConfigError, VenueConfig, load_config
from dataflows.orderbook import build_flow
from sources.venues import coinbase_exchange as cx
from sources.capture.format import read_capture
from sources.venues.base import (ANY_PRODUCT, BOOK, ERROR, HEARTBEAT, IGNORED, REPLY, TICKER, TRADES,
                                 FrameError)
from sources.simulator import Recording, SimulatorThread, load_recording
from sources.simulator.exchanges.coinbase_exchange_server import AUTH_REASON
from sources.venues import VENUE_NAMES, get_venue
from sources.venues.credentials import Credentials
from sources.transport.websocket import WebsocketSource
from state.events import SNAPSHOT, UPDATE, BookStatus
from tests.helpers import websocket_source, comparable as _comparable, read_dir, recv, run, send


def parse(msg, ts):
    """The venue parser on the frame's bytes, as the feed calls it."""
    return cx.parse(orjson.dumps(msg), ts)

REC = Path(__file__).resolve().parent.parent / "recordings" / "coinbase_exchange_level2.jsonl.gz"
UPDATES = {"SKL-USD": 2592, "DASH-BTC": 1925, "SKL-BTC": 1539, "BAND-BTC": 1005,
           "CRV-EUR": 670, "NMR-EUR": 665, "YFI-BTC": 487, "BAND-GBP": 471, "SKL-GBP": 289,
           "NU-GBP": 76}
PRODUCTS = sorted(UPDATES)
#: A test API key (the secret is base64, as Coinbase shows it), as the
#: simulator is started with it and as lobstream is configured with it.
API_KEYS = {"coinbase_exchange": [("test-key", "c2ltdWxhdG9yIHNlY3JldA==", "pass phrase")]}
CREDENTIALS = Credentials("coinbase_exchange", dict(zip(("key", "secret", "passphrase"),
                                                        API_KEYS["coinbase_exchange"][0])), "test")
# A live run and a replay differ only in receive times: the feed has no
# per-connection counter, updates carry the recorded ``time`` and snapshots have
# no time on either path.
LIVE_ONLY = ("ts_recv",)


@pytest.fixture(scope="module")
def frames():
    return [f for f in read_capture(REC) if f.dir == "recv"]


@pytest.fixture(scope="module")
def parsed(frames):
    return [parse(f.msg, f.ts) for f in frames]


@pytest.fixture(scope="module")
def capture() -> Path:
    """The bundled recording; the converter labels it with the venue it came from."""
    assert {f.venue for f in read_capture(REC)} == {cx.VENUE}
    return REC


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording([REC])


def comparable(files: Dict[str, List[dict]]) -> Dict[str, List[dict]]:
    return _comparable(files, LIVE_ONLY)


def _update(changes: Any, product: str = "SKL-USD") -> Dict[str, Any]:
    return {"type": "l2update", "product_id": product, "changes": changes,
            "time": "2021-04-17T16:43:37.075687Z"}


# ------------------------------------------------------------------ parser, real recording


def test_every_frame_parses_into_books_and_known_kinds(frames, parsed):
    assert len(frames) == 9946
    assert Counter(p.kind for p in parsed) == {BOOK: 9729, TRADES: 97, TICKER: 107, IGNORED: 10,
                                               REPLY: 3}
    assert all(p.seq is None for p in parsed)  # the L2 feed has no sequence
    events = [e for p in parsed if p.kind == BOOK for e in p.events]
    assert Counter(e.product for e in events if e.kind == SNAPSHOT) == {p: 1 for p in PRODUCTS}
    assert Counter(e.product for e in events if e.kind == UPDATE) == UPDATES
    assert all(e.venue == "coinbase_exchange" and e.seq is None and e.prev_seq is None
               for e in events)
    # Each product's snapshot comes before its first update.
    first = {}
    for i, e in enumerate(events):
        first.setdefault(e.product, (i, e.kind))
    assert {kind for _, kind in first.values()} == {SNAPSHOT}


def test_changes_keep_both_sides_and_absolute_sizes(frames, parsed):
    sides: Counter = Counter()
    zeros = 0
    for f, p in zip(frames, parsed):
        if f.msg["type"] != "l2update":
            continue
        (ev,) = p.events
        raw = f.msg["changes"]
        expect_bids = [(float(px), float(sz)) for side, px, sz in raw if side == "buy"]
        expect_asks = [(float(px), float(sz)) for side, px, sz in raw if side == "sell"]
        # each size is the level's new total, passed through as it is, never a delta
        assert (ev.bids, ev.asks) == (expect_bids, expect_asks)
        sides.update(side for side, _, _ in raw)
        zeros += sum(float(sz) == 0.0 for _, _, sz in raw)
    assert sides == {"buy": 5507, "sell": 4212}
    assert 0 < zeros < 9719  # deletions and new totals both occur


def test_snapshot_levels_and_no_exchange_time(frames, parsed):
    i = next(i for i, f in enumerate(frames)
             if f.msg["type"] == "snapshot" and f.msg["product_id"] == "BAND-GBP")
    (ev,) = parsed[i].events
    assert ev.kind == SNAPSHOT and (len(ev.bids), len(ev.asks)) == (152, 166)
    assert ev.bids[0] == (14.7693, 27.51) and ev.asks[0] == (14.8024, 12.77)
    assert ev.ts_exchange is None and ev.ts_recv == frames[i].ts


def test_update_time_is_the_exchange_time():
    ev = parse(_update([["sell", "0.00001306", "660.5"]], "SKL-BTC"), 5.0).events[0]
    # 2021-04-17 = day 18734 since the epoch; 18734 * 86400 + 16:43:37 (60217 s)
    assert ev.ts_exchange == pytest.approx(1618677817075.687, abs=1e-3)
    assert (ev.kind, ev.product, ev.ts_recv) == (UPDATE, "SKL-BTC", 5.0)
    assert ev.bids == [] and ev.asks == [(0.00001306, 660.5)]


def test_control_messages():
    beat = {"type": "heartbeat", "sequence": 90, "last_trade_id": 20, "product_id": "BTC-USD",
            "time": "2014-11-07T08:19:28.464459Z"}
    assert parse(beat, 1.0).kind == HEARTBEAT and parse(beat, 1.0).seq is None
    reply = parse({"type": "subscriptions",
                      "channels": [{"name": "level2_batch", "product_ids": ["BTC-USD"]}]}, 1.0)
    assert reply.kind == REPLY
    for kind in ("status", "auction"):
        assert parse({"type": kind, "product_id": "BTC-USD"}, 1.0).kind == IGNORED
    match = parse({"type": "match", "trade_id": 10, "sequence": 50, "time": "2014-11-07T08:19:27.028459Z",
                   "product_id": "BTC-USD", "size": "5.23512", "price": "400.23", "side": "sell"}, 1.0)
    (t,) = match.events
    assert (match.kind, t.side, t.seq, t.trade_id, t.base_size) == (TRADES, "buy", 10, "10", 5.23512)
    with pytest.raises(FrameError) as ei:
        parse({"type": "match", "product_id": "BTC-USD"}, 1.0)
    # Counted, and the book (which a match does not change) stays synced.
    assert (ei.value.kind, ei.value.products) == ("bad_trade", [])
    error = parse({"type": "error", "message": "Failed to subscribe", "reason": AUTH_REASON}, 1.0)
    assert (error.kind, error.ref) == (ERROR, None)
    assert error.detail == f"Failed to subscribe: {AUTH_REASON}"
    assert parse({"type": "error", "message": "Malformed JSON"}, 1.0).detail == "Malformed JSON"


@pytest.mark.parametrize("msg, products", [
    ({"type": "received", "product_id": "BTC-USD"}, []), ({"product_id": "BTC-USD"}, ANY_PRODUCT),
    (["snapshot"], ANY_PRODUCT), ("x", ANY_PRODUCT),
], ids=["full_channel", "no_type", "list", "string"])
def test_unknown_messages(msg, products):
    # A type the venue added concerns no book; a frame whose type cannot be read may
    # have been any book's update, which nothing on this venue would reveal.
    with pytest.raises(FrameError) as ei:
        parse(msg, 0.0)
    assert ei.value.kind == "unknown_type" and ei.value.products == products


@pytest.mark.parametrize("changes", [
    [["buy", "100", "-1"]], [["sell", "100", "abc"]], [["buy", "nan", "1"]],
    [["sell", "100", "inf"]], [["bid", "100", "1"]], [["buy", "100"]], [5], None,
], ids=["negative", "non_numeric", "nan", "infinite", "unknown_side", "missing_size",
        "not_a_list", "no_changes"])
def test_bad_update_rejects_the_frame_naming_its_product(changes):
    good = ["buy", "99", "1"]
    with pytest.raises(FrameError) as ei:
        parse(_update([good, *changes] if changes else changes, "NU-GBP"), 0.0)
    assert (ei.value.kind, ei.value.seq, ei.value.products) == ("bad_level", None, ["NU-GBP"])


def test_bad_snapshot_and_missing_product():
    snap = {"type": "snapshot", "product_id": "YFI-BTC", "bids": [["1", "1"]], "asks": [["2", "-3"]]}
    with pytest.raises(FrameError) as ei:
        parse(snap, 0.0)
    assert (ei.value.kind, ei.value.products) == ("bad_level", ["YFI-BTC"])
    del snap["asks"]
    with pytest.raises(FrameError) as ei:
        parse(snap, 0.0)
    assert (ei.value.kind, ei.value.products) == ("bad_level", ["YFI-BTC"])
    with pytest.raises(FrameError) as ei:
        parse({"type": "l2update", "changes": [], "time": "2021-04-17T16:43:37Z"}, 0.0)
    assert (ei.value.kind, ei.value.products) == ("bad_level", ANY_PRODUCT)


def test_subscribe_messages_and_venue():
    proto = cx.CoinbaseExchangeProtocol({})
    assert proto.open(["BTC-USD", "ETH-USD"]) == [
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"],
         "channels": ["level2_batch", "heartbeat", "matches"]}]
    assert proto.resubscribe("ETH-USD") == [
        {"type": "unsubscribe", "product_ids": ["ETH-USD"], "channels": ["level2_batch"]},
        {"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["level2_batch"]}]
    assert "coinbase_exchange" in VENUE_NAMES
    venue = get_venue("coinbase_exchange")
    assert (venue.name, venue.default_url) == ("coinbase_exchange",
                                               "wss://ws-feed.exchange.coinbase.com")
    level2 = venue.protocol({"channel": "level2", "trades": False})
    assert level2.open(["A-B"])[0]["channels"] == ["level2", "heartbeat"]
    assert level2.resubscribe("A-B")[1]["channels"] == ["level2"]


# ------------------------------------------------------------------ replay through the flow


@pytest.fixture(scope="module")
def replayed(capture, tmp_path_factory) -> Dict[str, List[dict]]:
    out = tmp_path_factory.mktemp("replay")
    run_main(build_flow(Config(replay=[str(capture)], jsonl_dir=str(out))))
    return read_dir(out)


def test_replay_never_crosses_and_ends_with_full_books(replayed):
    assert sorted(replayed) == [f"coinbase_exchange_{p}.jsonl" for p in PRODUCTS]
    for name, records in replayed.items():
        product = name.removeprefix("coinbase_exchange_").removesuffix(".jsonl")
        assert [r for r in records if r["type"] == "status" and r["state"] == "invalid"] == []
        assert not any(r["type"] == "alert" and r.get("kind") in ("crossed", "locked")
                       for r in records)
        summaries = [r for r in records if r["type"] == "summary"]
        assert len(summaries) == UPDATES[product] + 1
        last = summaries[-1]
        assert last["bid_levels"] > 0 and last["ask_levels"] > 0
        assert last["bid_px"] < last["ask_px"]


# ------------------------------------------------------------------ configuration


def _toml(tmp_path: Path, text: str) -> Dict[str, str]:
    path = tmp_path / "lobstream.toml"
    path.write_text(text)
    return {"LOBSTREAM_CONFIG": str(path)}


def _error(env: Dict[str, str]) -> str:
    with pytest.raises(ConfigError) as ei:
        load_config(env=env)
    assert "\n" not in str(ei.value)
    return str(ei.value)


CX_SETTINGS = {"channel": "level2_batch", "trades": True, "tickers": False}


def test_config_only_runs_the_exchange_when_asked(tmp_path):
    assert list(load_config(env={}).venues) == ["coinbase", "deribit"]
    cfg = load_config(env=_toml(tmp_path, '[coinbase_exchange]\nproducts = ["SKL-USD"]\n'))
    assert cfg.venues == {"coinbase_exchange": VenueConfig(
        ["SKL-USD"], "wss://ws-feed.exchange.coinbase.com", CX_SETTINGS, 10, instruments="check")}
    cfg = load_config(env={"LOBSTREAM_VENUES": "coinbase_exchange"})
    assert cfg.venues == {"coinbase_exchange": VenueConfig(
        ["BTC-USD", "ETH-USD"], "wss://ws-feed.exchange.coinbase.com", CX_SETTINGS, 10, instruments="check")}


def test_config_environment(tmp_path):
    cfg = load_config(env={"LOBSTREAM_COINBASE_EXCHANGE_PRODUCTS": "NU-GBP, YFI-BTC",
                           "LOBSTREAM_COINBASE_EXCHANGE_URL": "ws://127.0.0.1:1/coinbase-exchange",
                           "LOBSTREAM_COINBASE_EXCHANGE_CHANNEL": "level2_batch"})
    assert cfg.venues == {"coinbase_exchange": VenueConfig(
        ["NU-GBP", "YFI-BTC"], "ws://127.0.0.1:1/coinbase-exchange", CX_SETTINGS, 10, instruments="check")}


@pytest.mark.parametrize("env,expected", [
    ({"LOBSTREAM_COINBASE_EXCHANGE_CHANNEL": "level2"},
     "coinbase_exchange.channel='level2' needs Coinbase Exchange API credentials: set "
     "LOBSTREAM_COINBASE_EXCHANGE_KEY, LOBSTREAM_COINBASE_EXCHANGE_SECRET and "
     "LOBSTREAM_COINBASE_EXCHANGE_PASSPHRASE, or name a file holding key, secret and passphrase "
     "in coinbase_exchange.credentials_file; without them use level2_batch"),
    ({"LOBSTREAM_COINBASE_EXCHANGE_CHANNEL": "full"},
     "coinbase_exchange.channel='full'; valid choices: level2_batch, level2"),
    ({"LOBSTREAM_COINBASE_EXCHANGE_URL": "https://ws-feed.exchange.coinbase.com"},
     "coinbase_exchange.url='https://ws-feed.exchange.coinbase.com': expected a ws:// or "
     "wss:// URL"),
], ids=["level2", "full", "url"])
def test_config_errors(env, expected):
    assert _error(env) == expected


def test_config_file_level2_and_unknown_key(tmp_path):
    assert _error(_toml(tmp_path, '[coinbase_exchange]\nchannel = "level2"\n')).startswith(
        "coinbase_exchange.channel='level2' needs Coinbase Exchange API credentials")
    assert _error(_toml(tmp_path, '[coinbase_exchange]\ninterval = "100ms"\n')) == (
        "[coinbase_exchange]: unknown key 'interval'; valid keys: products, url, "
        "products_per_connection, rules, instruments, refresh, rest_url, channel, trades, "
        "tickers, credentials_file")


# ------------------------------------------------------------------ simulator protocol


def sub(*channels: Any, products: Optional[List[str]] = None,
        kind: str = "subscribe", **extra: Any) -> Dict[str, Any]:
    msg: Dict[str, Any] = {"type": kind, "channels": list(channels), **extra}
    if products is not None:
        msg["product_ids"] = products
    return msg


async def recv_data(ws: ClientConnection) -> Dict[str, Any]:
    """The next message that is not a heartbeat (those come whenever a second is up)."""
    while (msg := await recv(ws))["type"] == "heartbeat":
        pass
    return msg


def apply(book: Dict[str, Dict[str, str]], msg: Dict[str, Any]) -> None:
    """A client-side book from received messages only, keyed by the wire strings."""
    if msg["type"] == "snapshot":
        book["buy"] = dict(map(tuple, msg["bids"]))
        book["sell"] = dict(map(tuple, msg["asks"]))
        return
    for side, price, size in msg["changes"]:
        if Decimal(size) == 0:
            book[side].pop(price, None)
        else:
            book[side][price] = size


def test_level2_batch_serves_snapshot_then_the_recording_and_closes(recording):
    products = ["NU-GBP", "SKL-GBP"]

    async def client(url: str) -> Dict[str, Any]:
        messages = []
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, sub("level2_batch", products=products))
            try:
                async for raw in ws:
                    messages.append(orjson.loads(raw))
            except ConnectionClosed:
                pass
            return {"messages": messages, "close": (ws.close_code, ws.close_reason)}

    with SimulatorThread(recording, speed=0, retime="none") as sim:
        result = run(client(sim.url))
    messages = result["messages"]
    assert result["close"] == (1000, "end of recording")
    assert messages[0] == {"type": "subscriptions",
                           "channels": [{"name": "level2_batch", "product_ids": products}]}
    for product in products:
        mine = [m for m in messages[1:] if m["product_id"] == product]
        assert mine == [f.payload for f in recording.coinbase_exchange[product]]
        assert mine[0]["type"] == "snapshot"
        assert Counter(m["type"] for m in mine) == {"snapshot": 1, "l2update": UPDATES[product]}


def test_heartbeats_once_a_second_per_product(recording):
    async def client(url: str) -> List[Dict[str, Any]]:
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, sub("heartbeat", products=["BAND-GBP", "YFI-BTC"]))
            reply = await recv(ws)
            assert reply["channels"] == [{"name": "heartbeat",
                                          "product_ids": ["BAND-GBP", "YFI-BTC"]}]
            beats = []
            start = time.monotonic()
            while len(beats) < 4:
                beats.append(await recv(ws, timeout=2.5))
            assert 0.5 < time.monotonic() - start < 3.5
            return beats

    with SimulatorThread(recording, speed=0) as sim:
        beats = run(client(sim.url))
    assert Counter(b["product_id"] for b in beats) == {"BAND-GBP": 2, "YFI-BTC": 2}
    band = next(b for b in beats if b["product_id"] == "BAND-GBP")
    # No book subscribed, so the marks are the product's first recorded ones.
    assert (band["type"], band["sequence"], band["last_trade_id"]) == ("heartbeat", 333938798, 881613)
    assert band["time"].endswith("Z") and len(band["time"]) == 27


def test_unauthenticated_level2_is_refused_as_live(recording):
    async def client(url: str) -> None:
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, sub("level2", "heartbeat", products=["SKL-USD"]))
            assert await recv(ws) == {"type": "error", "message": "Failed to subscribe",
                                      "reason": AUTH_REASON}
            # The rest of the request stands, as live probes saw for heartbeat.
            assert (await recv(ws))["channels"] == [{"name": "heartbeat",
                                                     "product_ids": ["SKL-USD"]}]
            # No book data comes: for 1.5 s, only heartbeats.
            deadline = time.monotonic() + 1.5
            while (left := deadline - time.monotonic()) > 0:
                try:
                    assert (await recv(ws, timeout=left))["type"] == "heartbeat"
                except TimeoutError:
                    break
            # With a valid signature level2 is served.
            await send(ws, sub("level2", products=["SKL-USD"],
                               **cx.signed(CREDENTIALS, f"{time.time():.0f}")))
            assert (await recv_data(ws))["channels"] == [
                {"name": "heartbeat", "product_ids": ["SKL-USD"]},
                {"name": "level2", "product_ids": ["SKL-USD"]}]
            msg = await recv_data(ws)
            assert msg["type"] == "snapshot" and msg["product_id"] == "SKL-USD"

    with SimulatorThread(recording, rate=20, api_keys=API_KEYS) as sim:
        run(client(sim.url))


def test_unknown_product_and_channel_fail_the_whole_request(recording):
    async def client(url: str) -> None:
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, sub("level2_batch", "heartbeat", products=["SKL-USD", "BTC-USD"]))
            assert await recv(ws) == {"type": "error", "message": "Failed to subscribe",
                                      "reason": "BTC-USD is not a valid product"}
            await send(ws, sub({"name": "ticker_batch", "product_ids": ["SKL-USD"]}))
            assert (await recv(ws))["reason"] == "ticker_batch is not a valid channel"
            # Nothing was subscribed: the next reply lists only the new channel.
            await send(ws, sub("heartbeat", products=["SKL-USD"]))
            assert (await recv(ws))["channels"] == [{"name": "heartbeat",
                                                     "product_ids": ["SKL-USD"]}]

    with SimulatorThread(recording, speed=0) as sim:
        run(client(sim.url))


def test_closes_without_subscribe(recording):
    async def client(url: str) -> Optional[int]:
        async with connect(url + "/coinbase-exchange") as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code

    with SimulatorThread(recording, subscribe_timeout=0.3) as sim:
        assert run(client(sim.url)) == 1008


def test_resubscribe_gives_snapshot_of_the_received_book(recording):
    frames = recording.coinbase_exchange["DASH-BTC"]

    async def client(url: str) -> None:
        book: Dict[str, Dict[str, str]] = {"buy": {}, "sell": {}}
        received = 0
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, sub("level2_batch", products=["DASH-BTC"]))
            assert (await recv(ws))["type"] == "subscriptions"
            while received < 20:
                apply(book, await recv(ws))
                received += 1
            for message in cx.CoinbaseExchangeProtocol({}).resubscribe("DASH-BTC"):
                await send(ws, message)
            replies = []
            while (msg := await recv(ws))["type"] != "snapshot":
                if msg["type"] == "subscriptions":
                    replies.append(msg["channels"])
                else:
                    apply(book, msg)
                    received += 1
            assert replies == [[], [{"name": "level2_batch", "product_ids": ["DASH-BTC"]}]]
            assert msg["bids"] == sorted(map(list, book["buy"].items()),
                                         key=lambda level: Decimal(level[0]), reverse=True)
            assert msg["asks"] == sorted(map(list, book["sell"].items()),
                                         key=lambda level: Decimal(level[0]))
            # ...and the recording carries on where the client left it.
            assert await recv(ws) == frames[received].payload

    with SimulatorThread(recording, rate=100, retime="none") as sim:
        run(client(sim.url))


# ------------------------------------------------------------------ the dataflow over websockets


def test_level2_refusal_ends_the_partitions_with_a_refused_status(recording, caplog):
    """Bypassing the configuration (which would refuse level2 at start): the feed turns
    the server's error into a ``refused`` status per product, tells the operator what
    to do, and every partition ends by itself because all its products were refused."""
    products = ["NU-GBP", "YFI-BTC"]
    got: List[Any] = []
    with SimulatorThread(recording, speed=0) as sim:
        source = websocket_source("coinbase_exchange", products, sim.url + "/coinbase-exchange",
                                  {"channel": "level2", "trades": False}, exit_on_close=True)
        flow = Dataflow("refused")
        op.output("out", op.input("in", flow, source), TestingSink(got))
        with caplog.at_level(logging.INFO, logger="lobstream.feed"):
            run_main(flow)
    detail = f"Failed to subscribe: {AUTH_REASON}"
    assert len(got) == 2
    statuses = dict(got)
    for product in products:
        status = statuses[f"coinbase_exchange:{product}"]
        assert isinstance(status, BookStatus)
        assert status._replace(ts_recv=0.0) == BookStatus(
            "coinbase_exchange", product, 0.0, "invalid", "refused", detail)
    errors = [r.getMessage() for r in caplog.records
              if r.name == "lobstream.feed" and r.levelno == logging.ERROR]
    assert len(errors) == 1  # one line per kind of error, not one per product
    assert "level2_batch" in errors[0] and "credentials" in errors[0]


def test_level2_batch_over_websockets_matches_the_replay(recording, replayed, tmp_path):
    with SimulatorThread(recording, speed=0, retime="none") as sim:
        cfg = Config(venues={"coinbase_exchange": VenueConfig(
            PRODUCTS, sim.url + "/coinbase-exchange", {"channel": "level2_batch",
                                                       "tickers": True})},
            exit_on_close=True, jsonl_dir=str(tmp_path / "live"))
        run_main(build_flow(cfg))
    live = read_dir(tmp_path / "live")
    assert len(live) == 10
    assert comparable(live) == comparable(replayed)

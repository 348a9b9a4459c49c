"""Trades and tickers from the simulator, every venue, over real websockets.

They ride the same per-connection replay as the books, so a websocket run must
give exactly what a replay of the capture gives: each test parses the frames the
simulator sent and the capture's frames with lobstream's own venue parsers and
compares the trades and tickers (all fields but the receive time). Resubscribes
are answered as the real venues do: Coinbase Advanced Trade re-sends its recent
trades in a ``snapshot`` (which a client must not count again), Coinbase
Exchange starts ``matches`` with a ``last_match``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sources.capture.format import read_capture
from sources.simulator import Recording, SimulatorThread, load_recording
from sources.venues import get_venue
from sources.venues.base import TICKER, TRADES
from tests.helpers import recv, run, send

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
COINBASE = RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"
EXCHANGE = RECORDINGS / "coinbase_exchange_level2.jsonl.gz"
DERIBIT = RECORDINGS / "deribit_options.jsonl.gz"
BINANCE = {"spot": RECORDINGS / "binance_spot_btcusdt.jsonl.gz",
           "usdm": RECORDINGS / "binance_usdm_ethusdt.jsonl.gz",
           "coinm": RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz",
           "pairs": RECORDINGS / "binance_spot_10pairs.jsonl.gz"}
MAX_SIZE = 16 * 2**20  # the BTC-USD level2 snapshot is one ~5 MB frame
EXCHANGE_PRODUCTS = ["SKL-USD", "DASH-BTC", "BAND-GBP", "YFI-BTC"]
OPTION = "ETH-9APR21-1950-C"


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording([COINBASE, EXCHANGE, DERIBIT, *BINANCE.values()])


def parsed(venue: str, frames: Sequence[bytes], kinds: Tuple[str, ...] = (TRADES, TICKER),
           products: Sequence[str] = ()) -> List[Tuple[str, Any]]:
    """The trades and tickers lobstream parses from ``frames``, receive time
    zeroed, as ``(kind, event)``."""
    parse = get_venue(venue).parse
    out = []
    for raw in frames:
        result = parse(raw, 0.0)
        if result.kind in kinds:
            out += [(result.kind, e) for e in result.events if not products or e.product in products]
    return out


def capture_frames(path: Path) -> List[bytes]:
    return [f.raw for f in read_capture(path) if f.dir == "recv" and f.is_json]


async def collect(ws: ClientConnection) -> List[bytes]:
    """Every frame until the server closes the connection, as received."""
    frames = []
    try:
        async for raw in ws:
            frames.append(raw.encode() if isinstance(raw, str) else raw)
    except ConnectionClosed:
        pass
    return frames


# --- a websocket run gives the replay's trades and tickers ----------------------------

def test_coinbase_trades_and_tickers_equal_the_replay(recording: Recording) -> None:
    products = ["BTC-USD", "ETH-USD"]

    async def client(url: str) -> List[bytes]:
        async with connect(url + "/coinbase", max_size=MAX_SIZE, max_queue=None) as ws:
            for channel in ("market_trades", "ticker", "level2"):
                await send(ws, {"type": "subscribe", "channel": channel, "product_ids": products})
            return await collect(ws)

    # Paced (the 25 s recording in 0.5 s): at full speed the trades could all be
    # sent, and the connection ended, before the next subscribe is read.
    with SimulatorThread(recording, speed=50, retime="none") as sim:
        frames = run(client(sim.url), timeout=30)
    got, want = parsed("coinbase", frames), parsed("coinbase", capture_frames(COINBASE))
    assert sum(k == TRADES for k, _ in want) == 279 and sum(k == TICKER for k, _ in want) == 160
    for kind in (TRADES, TICKER):
        for product in products:  # per product, exactly the recorded ones in order
            assert [e for k, e in got if k == kind and e.product == product] == \
                [e for k, e in want if k == kind and e.product == product]
    # Envelope times are the recorded ones (a ticker's only time).
    messages = [orjson.loads(f) for f in frames]
    recorded = {m["sequence_num"]: m["timestamp"] for m in map(orjson.loads, capture_frames(COINBASE))
                if m.get("channel") in ("ticker", "market_trades")}
    sent = sorted(m["timestamp"] for m in messages if m["channel"] in ("ticker", "market_trades"))
    assert sent == sorted(t for t in recorded.values())


@pytest.mark.parametrize("key,venue,path,streams", [
    ("spot", "binance", "/binance/stream", ["btcusdt@trade", "btcusdt@bookTicker"]),
    ("usdm", "binance_usdm", "/binance_usdm/public/stream", ["ethusdt@trade"]),
    ("coinm", "binance_coinm", "/binance_coinm/stream", ["ethusd_perp@trade"]),
    ("pairs", "binance", "/binance/stream",
     [f"{s}@aggTrade" for s in ("zilusdt", "dentusdt", "manausdt", "btcaud")]),
])
def test_binance_trades_equal_the_replay(recording: Recording, key: str, venue: str, path: str,
                                         streams: List[str]) -> None:
    async def client(url: str) -> List[bytes]:
        async with connect(f"{url}{path}?streams={'/'.join(streams)}", max_queue=None) as ws:
            return await collect(ws)

    with SimulatorThread(recording, speed=0, retime="none") as sim:
        frames = run(client(sim.url))
    symbols = [s.split("@")[0].upper() for s in streams]
    got = parsed(venue, frames)
    want = parsed(venue, capture_frames(BINANCE[key]), (TRADES,), symbols)
    assert got == want and len(got) >= 150
    # The book tickers, which lobstream does not parse, come as recorded.
    if key == "spot":
        tickers = [orjson.loads(f)["data"] for f in frames if b"@bookTicker" in f[:40]]
        assert tickers == [f.payload for f in recording.binance["bookTicker"]["BTCUSDT"]]


def test_exchange_matches_and_tickers_equal_the_replay(recording: Recording) -> None:
    async def client(url: str) -> List[bytes]:
        async with connect(url + "/coinbase-exchange", max_queue=None) as ws:
            await send(ws, {"type": "subscribe", "product_ids": EXCHANGE_PRODUCTS,
                            "channels": ["level2_batch", "matches", "ticker"]})
            return await collect(ws)

    with SimulatorThread(recording, speed=0, retime="none") as sim:
        frames = run(client(sim.url))
    got = parsed("coinbase_exchange", frames)
    want = parsed("coinbase_exchange", capture_frames(EXCHANGE), products=EXCHANGE_PRODUCTS)
    assert got == want and len(got) > 50
    messages = [orjson.loads(f) for f in frames]
    for product in EXCHANGE_PRODUCTS:
        matches = [m for m in messages if m["type"] in ("match", "last_match")
                   and m["product_id"] == product]
        assert matches == [f.payload for f in recording.channels["coinbase_exchange"]["matches"]
                           [product]]
        assert matches[0]["type"] == "last_match"
        assert all(m["type"] == "match" for m in matches[1:])


def test_deribit_tickers_equal_the_replay_and_trades_are_quiet(recording: Recording) -> None:
    """The book recording has tickers but no trades: trades subscribe and send nothing."""
    instruments = sorted(recording.deribit)
    channels = [f"{kind}.{i}.100ms" for i in instruments for kind in ("book", "trades", "ticker")]

    async def client(url: str) -> List[bytes]:
        async with connect(url + "/deribit", max_queue=None) as ws:
            await send(ws, {"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
                            "params": {"channels": channels}})
            assert (await recv(ws))["result"] == channels
            return await collect(ws)

    with SimulatorThread(recording, speed=0, retime="none") as sim:
        frames = run(client(sim.url))
    got = parsed("deribit", frames)
    assert got == parsed("deribit", capture_frames(DERIBIT)) and len(got) == 273
    served = {orjson.loads(f)["params"]["channel"].split(".")[0] for f in frames}
    assert served == {"book", "ticker"}
    tickers = [orjson.loads(f)["params"] for f in frames if f.find(b'"ticker.') > 0]
    assert all(p["channel"] == f"ticker.{p['data']['instrument_name']}.100ms" for p in tickers)


def test_deribit_raw_trades_need_auth(recording: Recording) -> None:
    raw = f"trades.{OPTION}.raw"

    async def client(url: str) -> None:
        async with connect(url + "/deribit") as ws:
            await send(ws, {"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
                            "params": {"channels": [raw, f"ticker.{OPTION}.100ms"]}})
            assert (await recv(ws))["error"]["code"] == 13778
            await send(ws, {"jsonrpc": "2.0", "id": 2, "method": "public/auth",
                            "params": {"grant_type": "client_credentials",
                                       "client_id": "test-id", "client_secret": "test-secret"}})
            assert "access_token" in (await recv(ws))["result"]
            await send(ws, {"jsonrpc": "2.0", "id": 3, "method": "public/subscribe",
                            "params": {"channels": [raw, f"ticker.{OPTION}.raw"]}})
            assert (await recv(ws))["result"] == [raw, f"ticker.{OPTION}.raw"]
            note = await recv(ws)
            assert note["params"]["channel"] == f"ticker.{OPTION}.raw"
            await send(ws, {"jsonrpc": "2.0", "id": 4, "method": "public/unsubscribe",
                            "params": {"channels": [raw, f"ticker.{OPTION}.raw"]}})
            while "id" not in (msg := await recv(ws)):
                pass
            assert msg["result"] == [raw, f"ticker.{OPTION}.raw"]

    with SimulatorThread(recording, rate=20,
                         api_keys={"deribit": [("test-id", "test-secret")]}) as sim:
        run(client(sim.url))


# --- resubscribes ----------------------------------------------------------------------

async def resubscribed(ws: ClientConnection, channel: str, product: str,
                       count: int) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Subscribe a Coinbase channel, take ``count`` of its events, unsubscribe and
    subscribe again: the events received before (those in flight included) and
    the resubscription's snapshot event."""
    sub = {"type": "subscribe", "channel": channel, "product_ids": [product]}
    await send(ws, sub)
    before: List[Dict[str, Any]] = []
    while len(before) < count:
        msg = await recv(ws)
        if msg["channel"] == channel:
            before.append(msg["events"][0])
    await send(ws, {**sub, "type": "unsubscribe"})
    await send(ws, sub)
    while True:
        msg = await recv(ws)
        if msg["channel"] == channel:
            if msg["events"][0]["type"] == "snapshot":
                return before, msg["events"][0]
            before.append(msg["events"][0])


def test_coinbase_trades_resubscribe_starts_with_a_snapshot_of_trades_seen(
        recording: Recording) -> None:
    """Unsubscribe and subscribe market_trades again mid-stream: a snapshot of the
    last 100 trades sent, newest first, every one already received; then the
    recording goes on where it was. Deduplicated by trade id, the client has
    every recorded trade exactly once."""
    product = "ETH-USD"
    recorded = recording.coinbase["market_trades"][product]

    async def client(url: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any],
                                        List[Dict[str, Any]]]:
        async with connect(url + "/coinbase", max_queue=None) as ws:
            before, snapshot = await resubscribed(ws, "market_trades", product, 12)
            after = [m["events"][0] for m in map(orjson.loads, await collect(ws))
                     if m["channel"] == "market_trades"]
        return before, snapshot, after

    with SimulatorThread(recording, rate=100, retime="none") as sim:
        before, snapshot, after = run(client(sim.url), timeout=30)
    assert before == [f.payload for f in recorded[:len(before)]]
    seen = [t for event in before for t in event["trades"]]
    assert len(snapshot["trades"]) == 100 < len(seen)
    assert snapshot["trades"] == list(reversed(sorted(
        seen, key=lambda t: int(t["trade_id"]))))[:100]  # newest first
    assert after == [f.payload for f in recorded[len(before):]]
    ids = [t["trade_id"] for event in before + [snapshot] + after for t in event["trades"]]
    unique = list(dict.fromkeys(ids))
    assert len(ids) - len(unique) == 100  # the snapshot, all of them repeats
    assert sorted(unique) == sorted(t["trade_id"] for f in recorded for t in f.payload["trades"])


def test_coinbase_ticker_resubscribe_repeats_the_last_ticker(recording: Recording) -> None:
    async def client(url: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        async with connect(url + "/coinbase", max_queue=None) as ws:
            return await resubscribed(ws, "ticker", "BTC-USD", 5)

    with SimulatorThread(recording, rate=50, retime="none") as sim:
        before, snapshot = run(client(sim.url))
    assert snapshot == {"type": "snapshot", "tickers": before[-1]["tickers"]}


def test_exchange_matches_resubscribe_starts_with_last_match(recording: Recording) -> None:
    product = "DASH-BTC"
    recorded = recording.channels["coinbase_exchange"]["matches"][product]

    async def client(url: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any], Dict[str, Any]]:
        sub = {"type": "subscribe", "product_ids": [product], "channels": ["matches"]}
        async with connect(url + "/coinbase-exchange", max_queue=None) as ws:
            await send(ws, sub)
            matches: List[Dict[str, Any]] = []
            while len(matches) < 4:
                msg = await recv(ws)
                if msg["type"] in ("match", "last_match"):
                    matches.append(msg)
            await send(ws, {**sub, "type": "unsubscribe"})
            await send(ws, sub)
            replies = 0
            while replies < 2:  # matches in flight before the unsubscribe was read
                msg = await recv(ws)
                if msg["type"] == "subscriptions":
                    replies += 1
                else:
                    matches.append(msg)
            return matches, await recv(ws), await recv(ws)

    with SimulatorThread(recording, rate=20, retime="none") as sim:
        matches, again, nxt = run(client(sim.url))
    assert matches == [f.payload for f in recorded[:len(matches)]]
    assert again == {**matches[-1], "type": "last_match"}
    assert nxt == recorded[len(matches)].payload

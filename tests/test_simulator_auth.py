"""The simulator's authentication, checked for real over websockets with a plain client:
Deribit ``public/auth`` (client credentials, expiring tokens, single-use refresh tokens,
Deribit's error codes) and Coinbase Exchange's signed subscribe (key, passphrase,
30 s timestamp window, HMAC signature)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sources.simulator import Recording, SimulatorThread, load_recording
from sources.simulator.__main__ import PROG, config_from, main as simulator_main, parser
from tests.helpers import recv, run, send

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = [ROOT / "recordings" / "deribit_options.jsonl.gz",
            ROOT / "recordings" / "coinbase_exchange_level2.jsonl.gz"]
INSTRUMENT = "ETH-9APR21-1950-C"
DERIBIT_KEY = ("test-client", "test-secret")
CX_KEY = ("test-key", base64.b64encode(b"simulator secret").decode(), "pass:phrase")
API_KEYS = {"deribit": [DERIBIT_KEY], "coinbase_exchange": [CX_KEY]}


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording(CAPTURES)


def rpc(ident: int, method: str, **params: Any) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}


def credentials(client_id: str = DERIBIT_KEY[0], secret: str = DERIBIT_KEY[1]) -> Dict[str, Any]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def test_deribit_checks_credentials_and_rotates_refresh_tokens(recording: Recording) -> None:
    async def client(url: str) -> None:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/auth", **credentials(secret="wrong")))
            assert (await recv(ws))["error"] == {"code": 13004, "message": "invalid_credentials"}
            await send(ws, rpc(2, "public/auth", **credentials(client_id="nobody")))
            assert (await recv(ws))["error"]["code"] == 13004
            await send(ws, rpc(3, "public/auth", grant_type="client_credentials"))
            assert (await recv(ws))["error"]["code"] == -32602
            await send(ws, rpc(4, "public/auth", grant_type="password"))
            assert (await recv(ws))["error"]["code"] == -32602
            # Still unauthorized: raw is refused.
            await send(ws, rpc(5, "public/subscribe", channels=[f"book.{INSTRUMENT}.raw"]))
            assert (await recv(ws))["error"]["code"] == 13778
            await send(ws, rpc(6, "public/auth", **credentials()))
            first = (await recv(ws))["result"]
            assert first["expires_in"] == 900 and first["token_type"] == "bearer"
            await send(ws, rpc(7, "public/auth", grant_type="refresh_token",
                               refresh_token=first["refresh_token"]))
            second = (await recv(ws))["result"]
            assert second["access_token"] != first["access_token"]
            # A refresh token is good once.
            await send(ws, rpc(8, "public/auth", grant_type="refresh_token",
                               refresh_token=first["refresh_token"]))
            assert (await recv(ws))["error"] == {"code": 13009, "message": "unauthorized"}
            await send(ws, rpc(9, "public/subscribe", channels=[f"book.{INSTRUMENT}.raw"]))
            assert (await recv(ws))["result"] == [f"book.{INSTRUMENT}.raw"]
            return first, second

    with SimulatorThread(recording, rate=20, api_keys=API_KEYS) as sim:
        first, second = run(client(sim.url))
        seen = sim.credentials_seen()
        stats = sim.stats["deribit"]
    assert seen == [first["access_token"], first["refresh_token"],
                    second["access_token"], second["refresh_token"]]
    assert (stats.authentications, stats.refreshes, stats.auth_failures) == (1, 1, 3)


def test_deribit_closes_a_connection_whose_token_expires(recording: Recording) -> None:
    async def client(url: str) -> float:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/auth", **credentials()))
            assert (await recv(ws))["result"]["expires_in"] == 1
            start = time.monotonic()
            with pytest.raises(ConnectionClosed):
                while True:
                    await recv(ws, timeout=5)
            assert (ws.close_code, ws.close_reason) == (1008, "access token expired")
            return time.monotonic() - start

    with SimulatorThread(recording, rate=20, api_keys=API_KEYS, token_lifetime=1.0) as sim:
        assert 0.5 < run(client(sim.url)) < 4.0
        assert sim.stats["deribit"].expired == 1


def test_deribit_refuses_everyone_when_started_without_keys(recording: Recording) -> None:
    async def client(url: str) -> Dict[str, Any]:
        async with connect(url + "/deribit") as ws:
            await send(ws, rpc(1, "public/auth", **credentials()))
            return await recv(ws)

    with SimulatorThread(recording, rate=20) as sim:
        assert run(client(sim.url))["error"]["code"] == 13004


def sign(secret: str, stamp: str) -> str:
    """The signature as Coinbase's authentication docs define it (written out here, not
    taken from either side's code)."""
    mac = hmac.new(base64.b64decode(secret), f"{stamp}GET/users/self/verify".encode(),
                   hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def signed(key: tuple = CX_KEY, offset: float = 0.0, **override: str) -> Dict[str, str]:
    stamp = f"{time.time() + offset:.3f}"
    fields = {"key": key[0], "passphrase": key[2], "timestamp": stamp,
              "signature": sign(key[1], stamp)}
    return {**fields, **override}


def level2(**auth: str) -> Dict[str, Any]:
    return {"type": "subscribe", "product_ids": ["NU-GBP"], "channels": ["level2"], **auth}


@pytest.mark.parametrize("auth,reason", [
    (lambda: signed(key=("other", CX_KEY[1], CX_KEY[2])), "Invalid API Key"),
    (lambda: signed(passphrase="wrong"), "Invalid Passphrase"),
    (lambda: signed(key=(CX_KEY[0], base64.b64encode(b"other").decode(), CX_KEY[2])),
     "invalid signature"),
    (lambda: signed(offset=-35.0), "request timestamp expired"),
    (lambda: signed(offset=35.0), "request timestamp expired"),
    (lambda: signed(timestamp="soon"), "invalid timestamp"),
    (lambda: {"signature": "x"}, "Invalid API Key"),
], ids=["key", "passphrase", "secret", "late", "early", "timestamp", "partial"])
def test_coinbase_exchange_refuses_bad_signatures(recording: Recording, auth, reason) -> None:
    async def client(url: str) -> None:
        async with connect(url + "/coinbase-exchange") as ws:
            await send(ws, {**level2(), "channels": ["level2", "heartbeat"], **auth()})
            assert await recv(ws) == {"type": "error", "reason": reason, "message":
                                      "Sorry, you could not be authenticated: Bad Request"}
            # The whole request was refused: the next reply lists only the new channel.
            await send(ws, {"type": "subscribe", "product_ids": ["NU-GBP"],
                            "channels": ["level2_batch"]})
            assert (await recv(ws))["channels"] == [{"name": "level2_batch",
                                                     "product_ids": ["NU-GBP"]}]

    with SimulatorThread(recording, rate=20, api_keys=API_KEYS) as sim:
        run(client(sim.url))
        assert sim.stats["coinbase_exchange"].auth_failures == 1


async def first_two(url: str, auth: Dict[str, str]) -> List[Dict[str, Any]]:
    """The answer to a signed level2 subscribe, and the message after it (none after
    a refusal)."""
    async with connect(url + "/coinbase-exchange") as ws:
        await send(ws, level2(**auth))
        answer = await recv(ws)
        return [answer, await recv(ws) if answer["type"] == "subscriptions" else {}]


def test_coinbase_exchange_serves_level2_to_a_valid_signature(recording: Recording) -> None:
    auth = signed(offset=-25.0)  # within the window, if only just
    with SimulatorThread(recording, rate=20, api_keys=API_KEYS) as sim:
        reply, first = run(first_two(sim.url, auth))
        assert sim.credentials_seen() == [auth["signature"]]
    assert reply["channels"] == [{"name": "level2", "product_ids": ["NU-GBP"]}]
    assert first["type"] == "snapshot" and first["product_id"] == "NU-GBP"


def test_coinbase_exchange_clock_skew(recording: Recording) -> None:
    """The server's clock 45 s ahead: a signature made now is outside its window, one
    stamped with the server's time is in it."""
    with SimulatorThread(recording, rate=20, api_keys=API_KEYS, clock_skew=45.0) as sim:
        refused, _ = run(first_two(sim.url, signed()))
        reply, _ = run(first_two(sim.url, signed(offset=45.0)))
    assert refused["reason"] == "request timestamp expired"
    assert reply["type"] == "subscriptions"


def test_cli_api_keys() -> None:
    args = parser().parse_args([
        "--capture", "x", "--api-key", "deribit:id:secret", "--api-key",
        f"coinbase_exchange:{CX_KEY[0]}:{CX_KEY[1]}:{CX_KEY[2]}", "--token-lifetime", "30",
        "--clock-skew", "-40"])
    config = config_from(args)
    # The passphrase keeps its ':'.
    assert config.api_keys == {"deribit": (("id", "secret"),), "coinbase_exchange": (CX_KEY,)}
    assert (config.token_lifetime, config.clock_skew) == (30.0, -40.0)


@pytest.mark.parametrize("argv,expected", [
    (["--api-key", "deribit:only-id"],
     "api key for deribit: a deribit API key is client_id:client_secret"),
    (["--api-key", "coinbase_exchange:k:not base64!:p"],
     "api key for coinbase_exchange: its secret is not base64"),
    (["--api-key", "coinbase:k:s"], "--api-key coinbase: the venue has no authentication"),
    (["--token-lifetime", "0.5"], "token_lifetime must be at least 1 s"),
], ids=["fields", "base64", "no_auth", "lifetime"])
def test_cli_api_key_errors(capsys, argv, expected) -> None:
    assert simulator_main(["--capture", str(CAPTURES[0]), "--port", "0"] + argv) == 2
    assert capsys.readouterr().err == f"{PROG}: error: {expected}\n"

"""Signature checks on REST and the WebSocket upgrade when --auth-public-key is given (§2)."""

from __future__ import annotations

import time

import pytest
import requests
import websockets

from app.kalshi.auth import HEADER_SIGNATURE, HEADER_TIMESTAMP, WS_PATH, auth_headers
from tests.simulator.conftest import WsClient, ws_connect

pytestmark = pytest.mark.timeout(60)

MARKETS_PATH = "/trade-api/v2/markets"


def _signed(keypair, method: str, path: str, **overrides: str) -> dict[str, str]:
    headers = auth_headers(keypair.key_id, keypair.private_key, method, path)
    headers.update(overrides)
    return headers


def _tampered(keypair, method: str, path: str) -> dict[str, str]:
    """A real signature, but of another request."""
    other = auth_headers(keypair.key_id, keypair.private_key, method, path + "x")
    return _signed(keypair, method, path, **{HEADER_SIGNATURE: other[HEADER_SIGNATURE]})


async def test_rest_and_websocket_signatures(sim_factory, rsa_keypair):
    sim = sim_factory(
        "--markets", "5", "--rate", "100", "--auth-public-key", str(rsa_keypair.public_path),
    )  # fmt: skip
    url = f"{sim.base}{MARKETS_PATH}?limit=2"
    signed = requests.get(url, headers=_signed(rsa_keypair, "GET", MARKETS_PATH), timeout=10)
    assert signed.status_code == 200 and len(signed.json()["markets"]) == 2
    # Market data stays readable unsigned unless --rest-auth strict (kalshi-api.md §1.2).
    assert requests.get(url, timeout=10).status_code == 200
    tampered = requests.get(url, headers=_tampered(rsa_keypair, "GET", MARKETS_PATH), timeout=10)
    assert tampered.status_code == 401
    assert tampered.json()["error"]["code"] == "unauthorized"
    stale_ms = str(int(time.time() * 1000) - 3_600_000)
    stale = requests.get(
        url,
        headers=_signed(rsa_keypair, "GET", MARKETS_PATH, **{HEADER_TIMESTAMP: stale_ms}),
        timeout=10,
    )
    assert stale.status_code == 401

    async with ws_connect(
        sim.ws_url, additional_headers=_signed(rsa_keypair, "GET", WS_PATH)
    ) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_tickers": ["KXSIMA-E0-T2"]},
            }
        )
        assert (await client.reply(command))["type"] == "subscribed"
    for headers in ({}, _tampered(rsa_keypair, "GET", WS_PATH)):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with ws_connect(sim.ws_url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401


async def test_strict_rest_and_optional_websocket_auth(sim_factory, rsa_keypair):
    sim = sim_factory(
        "--markets", "5", "--rate", "100", "--auth-public-key", str(rsa_keypair.public_path),
        "--rest-auth", "strict", "--ws-auth", "optional",
    )  # fmt: skip
    url = f"{sim.base}{MARKETS_PATH}"
    assert requests.get(url, timeout=10).status_code == 401
    signed = requests.get(url, headers=_signed(rsa_keypair, "GET", MARKETS_PATH), timeout=10)
    assert signed.status_code == 200
    # An unsigned socket is allowed but unauthenticated: orderbook_delta needs auth (code 9),
    # ticker does not.
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_tickers": ["KXSIMA-E0-T2"]},
            }
        )
        reply = await client.reply(command)
        assert reply["type"] == "error" and reply["msg"]["code"] == 9
        command = await client.send({"cmd": "subscribe", "params": {"channels": ["ticker"]}})
        assert (await client.reply(command))["type"] == "subscribed"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with ws_connect(
            sim.ws_url, additional_headers=_tampered(rsa_keypair, "GET", WS_PATH)
        ):
            pass
    assert refused.value.response.status_code == 401

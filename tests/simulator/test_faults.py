"""Fault injection, on demand (admin API) and periodic (CLI flags), and its truth records."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
import websockets

from app.simulator.truth import load_truth
from tests.simulator.conftest import WsClient, of_type, ws_connect

pytestmark = pytest.mark.timeout(60)


def _is_unknown_type(message: Any) -> bool:
    return isinstance(message, dict) and message["type"] == "simulator_unknown_type"


def _tickers(sim: Any, count: int) -> list[str]:
    return [m["ticker"] for m in sim.get("/markets", limit=count + 2).json()["markets"][2:]]


async def _subscribe_book(client: WsClient, tickers: list[str]) -> int:
    command = await client.send(
        {"cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": tickers}}
    )
    return (await client.reply(command))["msg"]["sid"]


def _sequenced(client: WsClient, sid: int) -> list[tuple[int, str]]:
    return [
        (m["seq"], text)
        for m, text in zip(client.messages, client.texts, strict=True)
        if isinstance(m, dict) and m.get("sid") == sid and "seq" in m and m["type"] != "ok"
    ]


async def test_admin_faults_on_a_live_connection(sim_factory):
    sim = sim_factory("--markets", "10", "--rate", "3000", "--seed", "4")
    tickers = _tickers(sim, 4)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        conn = client.conn_id
        sid = await _subscribe_book(client, tickers)
        await client.collect(0.3)
        sim.fault(type="skip_seq", conn=conn, sid=sid)
        await client.collect(0.4)
        sim.fault(type="repeat_seq", conn=conn)
        await client.collect(0.4)
        applied = sim.fault(type="malformed", conn=conn)
        assert applied["applied"][0]["connections"] == [conn]
        sim.fault(type="unknown_type", conn=conn)
        await client.collect(0.3)
        # Stall: nothing arrives for about a second, then the queued frames do.
        sim.fault(type="stall", conn=conn, seconds=1.0)
        arrivals = [time.monotonic()]  # the stall may begin before any queued frame is read
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            await client.recv(3)
            arrivals.append(time.monotonic())
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert max(gaps) >= 0.8, "the stall did not stop the stream"
        # A terminal channel error drops the subscription.
        sim.fault(type="ws_error", conn=conn, code=17, sid=sid)
        error = await client.until(of_type("error"))
        assert error["msg"]["code"] == 17 and error["sid"] == sid
        listing = await client.send({"cmd": "list_subscriptions"})
        assert (await client.reply(listing))["msg"] == []
        sim.fault(type="drop", conn=conn)
        await client.drain_until_closed(5)
        # A drop closes the TCP connection without a WebSocket close frame.
        assert ws.protocol.close_rcvd is None and ws.close_code == 1006

    sequenced = _sequenced(client, sid)
    seqs = [seq for seq, _ in sequenced]
    duplicates = [seq for i, seq in enumerate(seqs[1:], 1) if seq == seqs[i - 1]]
    assert len(duplicates) == 1, "repeat_seq sends exactly one frame twice"
    dup_index = seqs.index(duplicates[0])
    assert sequenced[dup_index][1] == sequenced[dup_index + 1][1], "the repeat is identical"
    unique = sorted(set(seqs))
    missing = sorted(set(range(1, unique[-1] + 1)) - set(unique))
    assert len(missing) == 1, f"skip_seq leaves exactly one gap: {missing}"
    malformed = [text for text, m in zip(client.texts, client.messages, strict=True) if m is None]
    assert malformed and all(not text.endswith("}") for text in malformed)
    assert any(
        isinstance(m, dict) and m["type"] == "simulator_unknown_type" for m in client.messages
    )

    assert sim.stop() == 0
    truth = load_truth(sim.truth)
    faults = {f.fault: f for f in truth.faults}
    assert set(faults) == {
        "skip_seq", "repeat_seq", "malformed", "unknown_type", "stall", "ws_error", "drop",
    }  # fmt: skip
    skipped = faults["skip_seq"]
    assert (skipped.conn, skipped.sid, skipped.seq) == (conn, sid, missing[0])
    assert skipped.details["frame"] not in client.texts, "the skipped frame is never sent"
    assert json.loads(skipped.details["frame"])["seq"] == missing[0]
    # The book change behind the skipped frame still happened on the exchange.
    body = json.loads(skipped.details["frame"])["msg"]
    assert any(
        c.ticker == body["market_ticker"] and c.side == body["side"] for c in truth.book_changes
    )
    assert faults["repeat_seq"].seq == duplicates[0]
    assert faults["ws_error"].details["code"] == 17
    assert truth.connections[conn].close_reason == "fault:drop"
    assert truth.text_frames(conn) == client.texts


async def test_rest_fault_bursts_and_bad_fault_requests(sim_factory):
    sim = sim_factory("--markets", "5", "--rate", "100", truth=True)
    assert sim.get("/exchange/status").status_code == 200
    sim.fault(type="rest_429", count=2)
    first, second, third = (sim.get("/markets", limit=1) for _ in range(3))
    assert first.status_code == second.status_code == 429
    assert first.json() == {"error": "too many requests"}
    assert "Retry-After" not in first.headers
    assert third.status_code == 200
    sim.fault(type="rest_5xx", count=1, status=502)
    failed = sim.get("/markets/KXSIMA-E0-T1")
    assert failed.status_code == 502 and set(failed.json()) == {"code", "message"}
    assert sim.get("/markets/KXSIMA-E0-T1").status_code == 200
    bad = sim.http.post(f"{sim.base}/admin/faults", data='{"type": "explode"}', timeout=10)
    assert bad.status_code == 400 and "type must be one of" in bad.json()["message"]
    bad = sim.http.post(f"{sim.base}/admin/faults", data='{"type": "drop", "conn": 99}', timeout=10)
    assert bad.status_code == 400
    assert sim.stop() == 0
    faults = load_truth(sim.truth).faults
    assert [f.fault for f in faults] == ["rest_429", "rest_429", "rest_5xx"]
    assert faults[2].details["status"] == 502


async def test_periodic_faults_from_cli_flags(sim_factory):
    sim = sim_factory(
        "--markets", "10", "--rate", "3000", "--seed", "6",
        "--skip-seq-every", "40", "--repeat-seq-every", "55", "--rest-429-every", "3",
        "--malformed-every", "0.4", "--unknown-type-every", "0.4", "--drop-every", "1.5",
    )  # fmt: skip
    statuses = [sim.get("/exchange/status").status_code for _ in range(9)]
    assert statuses.count(429) == 3
    tickers = [f"KXSIMA-E{e}-T{k}" for e in (1, 2) for k in (1, 2)]
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        sid = await _subscribe_book(client, tickers)
        await client.drain_until_closed(4)
        assert ws.close_code == 1006, "the periodic drop closed the connection"
    seqs = [seq for seq, _ in _sequenced(client, sid)]
    assert any(b - a == 2 for a, b in itertools.pairwise(seqs)), "periodic skips"
    assert any(b == a for a, b in itertools.pairwise(seqs)), "periodic repeats"
    assert None in client.messages, "periodic malformed frames"
    assert any(
        isinstance(m, dict) and m["type"] == "simulator_unknown_type" for m in client.messages
    )
    assert sim.stop() == 0
    kinds = {f.fault for f in load_truth(sim.truth).faults if f.source == "periodic"}
    assert kinds >= {"skip_seq", "repeat_seq", "rest_429", "malformed", "unknown_type", "drop"}


async def test_slow_reader_gets_error_25_and_is_disconnected(sim_factory):
    sim = sim_factory(
        "--markets", "20", "--rate", "5000", "--seed", "1", "--max-buffer-mb", "0.0625"
    )
    tickers = _tickers(sim, 10)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        sid = await _subscribe_book(client, tickers)
        # A stall makes the server queue frames; past the 64 KiB bound it gives up on us.
        sim.fault(type="stall", conn=client.conn_id, seconds=5)
        error = await client.until(of_type("error"), timeout=5)
        assert error["msg"]["code"] == 25 and error["sid"] == sid
        await client.drain_until_closed(5)
    assert sim.stop() == 0
    truth = load_truth(sim.truth)
    assert truth.connections[client.conn_id].close_reason == "overflow"
    assert truth.text_frames(client.conn_id) == client.texts


async def test_restart_drops_everyone_and_refuses_service_for_a_while(sim_factory):
    sim = sim_factory("--markets", "6", "--rate", "500", "--seed", "2")
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        await client.reply(
            await client.send({"cmd": "subscribe", "params": {"channels": ["ticker"]}})
        )
        started = time.monotonic()
        sim.fault(type="restart", seconds=1.5)
        await client.drain_until_closed(5)
    refused = sim.get("/exchange/status")
    assert refused.status_code == 503 and refused.json()["code"] == "service_unavailable"
    with pytest.raises(websockets.InvalidStatus) as rejected:
        async with ws_connect(sim.ws_url):
            pass
    assert rejected.value.response.status_code == 503
    while sim.get("/exchange/status").status_code == 503:
        time.sleep(0.1)
    assert time.monotonic() - started >= 1.4
    async with ws_connect(sim.ws_url) as ws:
        assert WsClient(ws).conn_id == client.conn_id + 1
    assert sim.state()["faults_applied"]["restart"] == 1

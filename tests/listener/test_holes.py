"""Capture holes (docs/holes.md): the tracker's rules, the successor's records, and the real
listener recording holes for its start, drops and a kill -9 against the simulator."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from app.listener import Listener
from app.listener.control import ControlRecordError, hole_row, parse_control, session_row
from app.listener.heartbeat import decode_heartbeat, heartbeat_key, successor_records
from app.listener.holes import HoleTracker
from tests.conftest import clean_env
from tests.listener.conftest import (
    EPOCH_MS,
    Running,
    fast_listener,
    make_settings,
    read_published,
)

REPO = Path(__file__).resolve().parents[2]
# Every channel a default listener captures (global connections and book shards).
CHANNELS = {
    "trade", "ticker", "market_lifecycle_v2", "multivariate_market_lifecycle", "orderbook_delta",
}  # fmt: skip
KALSHI_DATA = str(REPO / ".venv" / "bin" / "kalshi-data")


def _tracker(lead_ns: int = 0) -> tuple[HoleTracker, list[tuple[str, dict[str, Any]]]]:
    emitted: list[tuple[str, dict[str, Any]]] = []
    tracker = HoleTracker("g1", lambda event, fields: emitted.append((event, fields)), lead_ns)
    return tracker, emitted


def test_a_channel_hole_opens_once_and_closes_at_the_subscription() -> None:
    tracker, emitted = _tracker(lead_ns=50)
    tracker.channel_missed("trade", "not_subscribed", 1_000, lead=False)
    tracker.channel_missed("trade", "disconnect", 2_000, conn_id="c1")  # already open: no-op
    assert [e for e, _ in emitted] == ["hole_opened"] and tracker.channel_open("trade")
    tracker.channel_resumed("trade", 3_000)
    tracker.channel_resumed("trade", 4_000)  # nothing open any more
    assert [e for e, _ in emitted] == ["hole_opened", "hole_closed"]
    closed = hole_row({"event": "hole_closed", **emitted[1][1]})
    assert closed["cause"] == "not_subscribed" and closed["market_tickers"] is None
    assert (closed["from_at"].timestamp(), closed["to_at"].timestamp()) == (1e-6, 3e-6)
    assert closed["backfill_status"] == "pending"  # trade holes wait for the REST backfill
    tracker.channel_missed("trade", "disconnect", 10_000, conn_id="c2")
    assert emitted[-1][1]["from_ns"] == 10_000 - 50  # the lead covers frames on the way


def test_book_holes_close_when_every_market_has_a_fresh_snapshot() -> None:
    tracker, emitted = _tracker()
    tracker.books_missed(["A", "B"], "not_subscribed", 100, lead=False)
    tracker.books_missed(["B", "C"], "seq_gap", 200, conn_id="c1")  # B already waits
    opened = [f for e, f in emitted if e == "hole_opened"]
    assert [o["market_tickers"] for o in opened] == [["A", "B"], ["C"]]
    tracker.book_resumed("A", 300)
    tracker.book_resumed("C", 310)  # closes the seq_gap hole (only C)
    assert [(e, f["market_tickers"]) for e, f in emitted[2:]] == [("hole_closed", ["C"])]
    tracker.books_forgotten(["B"], 320)  # the last market left: the first hole ends too
    assert emitted[-1][0] == "hole_closed" and emitted[-1][1]["to_ns"] == 320
    assert tracker.open_holes == [] and (tracker.opened, tracker.closed) == (2, 2)


def test_hole_records_that_do_not_parse_are_refused() -> None:
    good = {
        "type": "kd_control", "v": 1, "event": "hole_opened", "gatherer": "g", "hole_id": "h",
        "channel": "ticker", "cause": "disconnect", "from_ns": 5_000, "market_tickers": None,
    }  # fmt: skip
    assert hole_row(parse_control(orjson.dumps(good)))["backfill_status"] is None
    for broken in ({"cause": "meteor"}, {"from_ns": "soon"}, {"market_tickers": "A"},
                   {"event": "hole_closed", "to_ns": 1_000}):  # fmt: skip
        with pytest.raises(ControlRecordError):
            hole_row({**good, **broken})


def test_a_successor_closes_what_a_dead_listener_left_open() -> None:
    previous = {
        "v": 1, "listener_id": "old", "state": "running", "started_ns": 0,
        "heartbeat_ns": 9_000, "durable_ns": 8_000, "channels": ["trade", "orderbook_delta"],
        "sessions": [{"conn_id": "g1-ob0-x", "role": "orderbook", "shard": "ob0", "url": "ws",
                      "opened_ns": 10, "market_count": 3}],
        "holes": [{"hole_id": "h1", "channel": "orderbook_delta", "cause": "seq_gap",
                   "from_ns": 7_000, "conn_id": "g1-ob0-x", "detail": "sid 1"}],
    }  # fmt: skip
    records = successor_records(previous, gatherer="g1", started_ns=20_000, lead_ns=500)
    events = [(e, f.get("cause") or f.get("close_reason")) for e, f in records]
    assert events[0] == ("hole_closed", "seq_gap") and records[0][1]["to_ns"] == 20_000
    session = session_row({"event": "session_closed", **records[1][1]})
    assert session["closed_at"].timestamp() == 9e-6 and "died" in session["close_reason"]
    died = [hole_row({"event": e, **f}) for e, f in records[2:]]
    assert {(h["channel"], h["cause"]) for h in died} == {
        ("trade", "listener_died"),
        ("orderbook_delta", "listener_died"),
    }
    assert all(f["from_ns"] == 7_500 for _, f in records[2:])  # durable bound less lead
    # A clean stop: only the shutdown holes are closed; no death is recorded.
    stopped = successor_records(
        {**previous, "state": "stopped"}, gatherer="g1", started_ns=20_000, lead_ns=500
    )
    assert [e for e, _ in stopped] == ["hole_closed"]
    assert successor_records(None, gatherer="g1", started_ns=1, lead_ns=0) == []
    assert decode_heartbeat(b"not json") is None and decode_heartbeat(b'{"v": 99}') is None


def _holes(published_control: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """hole_id -> merged row (the close record wins, as the upsert does)."""
    rows: dict[str, dict[str, Any]] = {}
    for record in published_control:
        if record["event"].startswith("hole"):
            row = hole_row(record)
            if row["hole_id"] not in rows or row["to_at"] is not None:
                rows[row["hole_id"]] = row
    return rows


def _sim_closes(sim: Any, reason: str) -> list[int]:
    sim.dump()
    lines = (sim.truth / "connections.jsonl").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    return [r["wall_ns"] for r in records if r["event"] == "close" and r["reason"] == reason]


def test_start_and_drops_are_recorded_as_holes(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(
        "--markets", "40", "--rate", "300", "--drop-every", "1.5", "--epoch-ms", str(EPOCH_MS)
    )  # fmt: skip
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)
    started = time.time_ns()

    async def scenario() -> Listener:
        run = Running(Listener(settings, fast_listener(markets_per_connection=20)))
        await run.until(lambda: run.subscribed(40))
        await asyncio.sleep(4.0)
        await run.until(lambda: run.subscribed(40))
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    holes = _holes(read_published(redis_test_url, gatherer).control())
    first = [h for h in holes.values() if h["cause"] == "not_subscribed"]
    # One per global channel and one per book shard, all closed, all from the start.
    assert {h["channel"] for h in first} == CHANNELS
    assert all(h["to_at"] is not None and h["from_at"].timestamp() * 1e9 >= started - 1e6
               for h in first)  # fmt: skip
    books = sorted(t for h in first if h["channel"] == "orderbook_delta"
                   for t in h["market_tickers"])  # fmt: skip
    assert books == sorted(listener.shards.tickers())
    drops = [h for h in holes.values() if h["cause"] == "disconnect"]
    assert drops and all(h["to_at"] is not None for h in drops)
    # Every connection the exchange dropped lies inside a hole of that connection.
    conns = {h["connection_id"] for h in drops}
    for close_ns in _sim_closes(sim, "fault:drop"):
        covering = [h for h in drops
                    if h["from_at"].timestamp() * 1e9 - 1e3 <= close_ns
                    <= h["to_at"].timestamp() * 1e9 + 1e3]  # fmt: skip
        assert covering, f"drop at {close_ns} is in no hole ({len(drops)} holes)"
    assert len(conns) >= 2
    # The clean stop leaves one open `listener_down` hole per channel (closed by a successor).
    down = [h for h in holes.values() if h["cause"] == "listener_down"]
    assert down and all(h["to_at"] is None for h in down)
    beat = decode_heartbeat(redis.Redis.from_url(redis_test_url).get(
        heartbeat_key(gatherer, f"listener-{gatherer}")))  # fmt: skip
    assert beat is not None and beat["state"] == "stopped"
    assert {h["hole_id"] for h in beat["holes"]} == {h["hole_id"] for h in down}


def test_a_listener_killed_with_sigkill_is_settled_by_its_successor(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "20", "--rate", "200", "--epoch-ms", str(EPOCH_MS))
    env = clean_env(
        KD_GATHERER=gatherer,
        KD_REDIS_URL=redis_test_url,
        KD_STREAMS__JOURNAL_DIR=str(tmp_path / "journal"),
        KD_METRICS__ENABLED="false",
    )
    process = subprocess.Popen(
        [KALSHI_DATA, "listener", "--ws-url", sim.ws_url, "--rest-url", sim.api],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis.from_url(redis_test_url)
    key = heartbeat_key(gatherer, f"listener-{gatherer}")
    try:
        deadline = time.monotonic() + 20
        while True:
            beat = decode_heartbeat(client.get(key))
            if beat is not None and len(beat["sessions"]) == 4 and not beat["holes"]:
                break
            assert process.poll() is None and time.monotonic() < deadline, beat
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        killed_ns = time.time_ns()
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
    old_sessions = {s["conn_id"] for s in beat["sessions"]}
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def successor() -> None:
        run = Running(Listener(settings, fast_listener(markets_per_connection=20)))
        await run.until(lambda: run.subscribed(20))
        await run.finish()

    asyncio.run(successor())
    control = read_published(redis_test_url, gatherer).control()
    closed = {r["conn_id"]: r for r in control if r["event"] == "session_closed"}
    assert old_sessions <= set(closed)
    assert all("died" in closed[c]["close_reason"] for c in old_sessions)
    died = [h for h in _holes(control).values() if h["cause"] == "listener_died"]
    assert {h["channel"] for h in died} == CHANNELS
    for hole in died:
        assert hole["from_at"].timestamp() * 1e9 <= killed_ns <= hole["to_at"].timestamp() * 1e9
        assert hole["market_tickers"] is None


class _Publisher:
    """Collects what a manager publishes (the manager only ever calls `add`)."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    def add(self, stream: str, frame: Any) -> None:
        self.frames.append(frame)


def test_a_market_added_later_is_missed_since_its_lifecycle_birth() -> None:
    from app.listener.connection import ConnectionManager
    from app.listener.holes import MarketBirths
    from app.listener.stats import ListenerStats
    from app.streams import StreamNames

    births = MarketBirths(limit=2)
    births.note("OLD", 1)
    births.note("NEW", 5_000_000_000)
    births.note("NEW", 9_000_000_000)  # the first announcement counts
    publisher = _Publisher()
    manager = ConnectionManager(
        shard="ob0", role="orderbook", channels=("orderbook_delta",), url="ws://unused",
        gatherer="g1", signer=None, publisher=publisher,  # type: ignore[arg-type]
        names=StreamNames("g1", 1), control_stream="kd:g1:control",
        settings=fast_listener(hole_lead_s=1.0), stats=ListenerStats(),
        started_ns=2_000_000_000, births=births,
    )  # fmt: skip
    manager.set_markets(add=["NEW", "OTHER"])
    opened = [hole_row(parse_control(f.raw)) for f in publisher.frames]
    froms = {tuple(h["market_tickers"]): h["from_at"].timestamp() for h in opened}
    # Before the first subscription: since the listener's start, or the birth less the lead
    # when that is earlier (here it is not: 5 s - 1 s > 2 s).
    assert froms == {("NEW", "OTHER"): 2.0}
    births.note("LATE", 4_500_000_000)
    births.note("EARLY", 2_500_000_000)
    manager._books_live = True  # a subscription was acknowledged: later adds start now or birth
    manager.set_markets(add=["LATE", "EARLY"])
    later = [hole_row(parse_control(f.raw)) for f in publisher.frames[-2:]]
    # Since its birth less the lead, but never before this listener started (2 s).
    assert {tuple(h["market_tickers"]): h["from_at"].timestamp() for h in later} == {
        ("LATE",): 3.5,
        ("EARLY",): 2.0,
    }
    # Bounded at 2: noting EARLY made three, so the oldest (OLD) was forgotten.
    assert len(births) == 0 and births.take("OLD") is None


def test_a_journal_loss_is_a_closed_hole_on_every_channel(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "2", "--rate", "10", "--epoch-ms", str(EPOCH_MS))
    listener = Listener(make_settings(gatherer, redis_test_url, sim, tmp_path), fast_listener())
    publisher = _Publisher()
    listener._publisher = publisher  # type: ignore[assignment]
    listener._journal_loss("seg-7", 5_000_000_000, 9_000_000_000, "torn last record")
    holes = [hole_row(parse_control(f.raw)) for f in publisher.frames]
    closed = [h for h in holes if h["to_at"] is not None]
    assert {h["channel"] for h in closed} == CHANNELS
    lead = fast_listener().hole_lead_s
    assert all(h["cause"] == "journal_loss" and "seg-7" in h["detail"] for h in closed)
    assert all(h["from_at"].timestamp() == 5.0 - lead and h["to_at"].timestamp() == 9.0
               for h in closed)  # fmt: skip
    assert listener.stats.journal_losses == 1


def test_a_hole_starts_at_a_reported_close_unless_the_connection_had_gone_silent() -> None:
    from app.kalshi.ws import CloseInfo
    from app.listener.connection import _last_alive_ns, _Session

    session = _Session(ws=None, conn_id="c", opened_ns=0, last_frame_ns=1_000)  # type: ignore[arg-type]
    # A quiet but live connection closed by the peer (drop, close frame): alive until the close.
    assert _last_alive_ns(session, CloseInfo(1006, "", None, 9_000)) == 9_000
    assert _last_alive_ns(session, CloseInfo(1001, "going away", None, 9_000)) == 9_000
    # Closes forced by silence: only the last frame read proves anything.
    assert _last_alive_ns(session, CloseInfo(1011, "keepalive ping timeout", None, 9_000)) == 1_000
    session.close_reason = "stale: no frame for 31.0s and no probe reply"
    assert _last_alive_ns(session, CloseInfo(1000, "", None, 9_000)) == 1_000
    session.close_reason = None
    assert _last_alive_ns(session, CloseInfo(1006, "", None, 0)) == 1_000  # end unknown


def test_combo_market_lifecycle_is_subscribed_by_default(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    """kalshi-api.md §9: combo markets' lifecycle comes only on multivariate_market_lifecycle."""
    sim = sim_factory("--markets", "4", "--rate", "20", "--epoch-ms", str(EPOCH_MS))
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def scenario() -> None:
        run = Running(Listener(settings, fast_listener()))
        await run.until(lambda: run.subscribed(4))
        await run.finish()

    asyncio.run(scenario())
    published = read_published(redis_test_url, gatherer)
    channels = {m["msg"]["channel"] for _, m in published.messages("subscribed")}
    assert "multivariate_market_lifecycle" in channels and "market_lifecycle_v2" in channels


def test_every_session_is_in_the_heartbeat_before_its_session_opened_record(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    """A kill -9 right after a (re)connect must not leave a session that no successor knows to
    close: the heartbeat names a session before its `session_opened` record is handed over."""
    sim = sim_factory("--markets", "10", "--rate", "100", "--drop-every", "1", "--epoch-ms",
                      str(EPOCH_MS))  # fmt: skip
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)
    checked: list[tuple[str, bool]] = []

    class Watching(Listener):
        async def _session_opened(self, conn_id: str) -> None:
            await super()._session_opened(conn_id)
            beat = decode_heartbeat(await self._client.get(self.heartbeat_key))
            named = {s["conn_id"] for s in (beat or {}).get("sessions", [])}
            checked.append((conn_id, conn_id in named))

    async def scenario() -> None:
        run = Running(Watching(settings, fast_listener(markets_per_connection=10)))
        await run.until(lambda: run.subscribed(10))
        await run.until(lambda: len(checked) >= 12, timeout=20)  # reconnects every second
        await run.finish()

    asyncio.run(scenario())
    assert len(checked) >= 12
    assert all(named for _, named in checked), checked

"""Lifecycle events: the pure state function, the database application, the change feed, and
the frames a real simulator sends over its WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets

from app.registry import (
    LifecycleEvent,
    MarketState,
    RegistrySettings,
    apply_lifecycle,
    apply_lifecycle_events,
    full_sync,
    load_state,
)
from app.registry.status import status_wins
from tests.registry.conftest import query, rest_client

T0 = datetime.fromtimestamp(1737554000, UTC)  # the example payload's era (Jan 2025)

# kalshi-api.md §3.5, verbatim.
CREATED = {
    "market_ticker": "KXBTCD-26JAN2310-T105000",
    "event_type": "created",
    "open_ts": 1737554400,
    "close_ts": 1737558000,
    "price_level_structure": "linear_cent",
    "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
    "additional_metadata": {
        "name": "...", "title": "...", "yes_sub_title": "...", "no_sub_title": "...",
        "rules_primary": "...", "rules_secondary": "...", "can_close_early": True,
        "event_ticker": "KXBTCD-26JAN2310", "expected_expiration_ts": 1737558000,
        "strike_type": "greater", "floor_strike": 105000, "cap_strike": None, "custom_strike": None,
    },
}  # fmt: skip
TICKER = CREATED["market_ticker"]


def event(msg: dict[str, Any], at: datetime) -> LifecycleEvent:
    return LifecycleEvent.from_msg({"market_ticker": TICKER, **msg}, at)


def test_pure_function_walks_a_market_through_its_life():
    created = apply_lifecycle(None, event(CREATED, T0))
    assert created.needs_fetch and created.state is not None
    state = created.state
    assert (state.status, state.event_ticker, state.series_ticker) == (
        "initialized", "KXBTCD-26JAN2310", "KXBTCD",
    )  # fmt: skip
    assert state.floor_strike == 105000 and state.price_level_structure == "linear_cent"
    assert state.close_time == datetime.fromtimestamp(1737558000, UTC)
    assert created.status_change is not None and created.status_change.previous is None

    steps = [
        ({"event_type": "activated", "is_deactivated": False}, "active"),
        ({"event_type": "deactivated", "is_deactivated": True}, "inactive"),
        ({"event_type": "activated", "is_deactivated": False}, "active"),
        ({"event_type": "close_date_updated", "close_ts": 1737561600}, "active"),
        ({"event_type": "determined", "result": "yes", "determination_ts": 1737561700,
          "settlement_value": "1.0000"}, "determined"),
        ({"event_type": "activated", "is_deactivated": False}, "determined"),  # never revives
        ({"event_type": "settled", "settled_ts": 1737565200}, "finalized"),
        ({"event_type": "metadata_updated", "floor_strike": 106000}, "finalized"),
    ]  # fmt: skip
    at = T0
    for msg, status in steps:
        at += timedelta(seconds=1)
        outcome = apply_lifecycle(state, event(msg, at))
        assert not outcome.needs_fetch
        assert outcome.state is not None
        state = outcome.state
        assert state.status == status, msg
    assert state.close_time == datetime.fromtimestamp(1737561600, UTC)
    assert (state.result, state.settlement_value) == ("yes", 1_000_000)
    assert state.settlement_ts == datetime.fromtimestamp(1737565200, UTC)
    assert state.floor_strike == 106000
    # an event for a market we never saw asks for a REST fetch and changes nothing
    unknown = apply_lifecycle(None, event({"event_type": "settled", "settled_ts": 1}, T0))
    assert unknown.needs_fetch and unknown.state is None


def test_status_order_is_by_time_then_lifecycle_rank():
    early, late = T0, T0 + timedelta(seconds=5)
    assert status_wins(None, None, "active", early)
    assert not status_wins("active", late, "active", late)
    assert status_wins("active", early, "inactive", late)
    assert not status_wins("inactive", late, "active", early)  # stale REST page: no regression
    assert status_wins("active", late, "determined", early)  # forward move: clocks disagree
    assert not status_wins("finalized", late, "active", early)
    # a replayed `deactivated` older than the `activated` we already hold is ignored
    state = MarketState(TICKER, "KXBTCD-26JAN2310", "active", status_at=late)
    stale = apply_lifecycle(
        state, event({"event_type": "deactivated", "is_deactivated": True}, early)
    )
    assert stale.state == state and stale.status_change is None


def test_events_applied_to_the_database_and_published(conn, feed):
    settings = RegistrySettings()
    now = datetime.fromtimestamp(1737554000, UTC)  # before the example market closes

    def apply(msg: dict[str, Any], at: datetime) -> Any:
        report = apply_lifecycle_events(conn, [event(msg, at)], settings=settings, now=now)
        conn.commit()
        feed.publish(report.added, report.removed)
        return report

    report = apply(CREATED, T0)  # no REST client: the row is built from the event itself
    assert (report.created_from_event, report.added) == (1, [TICKER])
    row = query(conn, "SELECT status, event_ticker, series_ticker, metadata FROM markets")
    assert row[0][:3] == ("initialized", "KXBTCD-26JAN2310", "KXBTCD")
    assert row[0][3]["market_lifecycle_created"]["open_ts"] == 1737554400
    assert TICKER in feed.snapshot().tickers

    apply({"event_type": "activated", "is_deactivated": False}, T0 + timedelta(seconds=1))
    again = apply({"event_type": "activated", "is_deactivated": False}, T0 + timedelta(seconds=2))
    assert again.status_changes == 0  # a repeated frame changes nothing
    apply({"event_type": "determined", "result": "no", "determination_ts": 1737558100,
           "settlement_value": "0.0000"}, T0 + timedelta(seconds=3))  # fmt: skip
    assert TICKER not in feed.snapshot().tickers  # determined: unsubscribe
    before = feed.snapshot()
    apply({"event_type": "settled", "settled_ts": 1737558200}, T0 + timedelta(seconds=4))
    state = load_state(conn, TICKER)
    conn.commit()
    assert state is not None
    assert (state.status, state.result, state.settlement_value) == ("finalized", "no", 0)
    history = query(
        conn,
        "SELECT previous_status, status, source, event_type FROM market_status_history "
        "ORDER BY observed_at",
    )
    assert history == [
        (None, "initialized", "ws", "created"),
        ("initialized", "active", "ws", "activated"),
        ("active", "determined", "ws", "determined"),
        ("determined", "finalized", "ws", "settled"),
    ]
    assert feed.snapshot().version == before.version  # already removed: nothing new published
    removed = [c for c in feed.read() if TICKER in c.removed]
    assert len(removed) == 1


async def _follow_lifecycle(
    ws_url: str, seconds: float, handle: Callable[[dict[str, Any], datetime], None]
) -> None:
    """Subscribe to `market_lifecycle_v2` and hand every frame over as it arrives, like the
    listener -> ingest path does (a REST fetch for `created` then sees the fresh market)."""
    async with websockets.connect(ws_url, max_queue=None) as ws:
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe",
                                  "params": {"channels": ["market_lifecycle_v2"]}}))  # fmt: skip
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            message = json.loads(text)
            if message.get("type") == "market_lifecycle_v2":
                handle(message["msg"], datetime.now(UTC))


def test_simulator_lifecycle_frames_drive_the_registry(sim_factory, conn, feed):
    sim = sim_factory("--markets", "8", "--seed", "4", "--rate", "400", "--market-lifetime", "2")
    settings = RegistrySettings(page_size=5)
    frames: list[dict[str, Any]] = []
    expected: dict[str, str] = {}
    final = {"activated": "active", "deactivated": "inactive", "determined": "determined",
             "settled": "finalized"}  # fmt: skip
    with rest_client(sim) as client:
        full_sync(conn, client, settings, feed=feed)
        after_sync = feed.snapshot().tickers

        def handle(msg: dict[str, Any], received: datetime) -> None:
            frames.append(msg)
            report = apply_lifecycle_events(
                conn,
                [LifecycleEvent.from_msg(msg, received)],
                settings=settings,
                fetch_market=client.get_market,
            )
            conn.commit()
            feed.publish(report.added, report.removed)
            if msg["event_type"] in final:
                expected[msg["market_ticker"]] = final[msg["event_type"]]

        asyncio.run(_follow_lifecycle(sim.ws_url, 3.0, handle))
    kinds = {msg["event_type"] for msg in frames}
    assert {"created", "activated", "determined", "settled"} <= kinds, kinds
    db = dict(query(conn, "SELECT ticker, status FROM markets"))
    assert {t: db.get(t) for t in expected} == expected
    # created markets appear with their full REST metadata
    created = [msg["market_ticker"] for msg in frames if msg["event_type"] == "created"]
    rows = query(conn, "SELECT ticker FROM markets WHERE metadata ? 'rules_primary' "
                       "AND ticker = ANY(%s)", created)  # fmt: skip
    assert {r[0] for r in rows} == set(created)
    assert set(created) & {t for change in feed.read() for t in change.added}
    # settled markets left the subscription set with a published `removed`
    changes = feed.read()
    ever = after_sync | {t for change in changes for t in change.added}
    settled = {t for t, s in expected.items() if s == "finalized"}
    snapshot = feed.snapshot()
    assert settled & ever and not settled & snapshot.tickers
    assert settled & ever <= {t for change in changes for t in change.removed}
    history = query(conn, "SELECT count(*) FROM market_status_history WHERE source = 'ws' "
                          "AND event_type = 'settled'")  # fmt: skip
    assert history[0][0] == len(settled)
    # versions are consecutive: a listener following the stream misses nothing
    versions = [c.version for c in changes]
    assert versions == list(range(1, len(versions) + 1)) and versions[-1] == snapshot.version

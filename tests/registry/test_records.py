"""REST objects of the 2026-H2 shapes (kalshi-api.md §9) -> registry rows, pure and in the
database: `exchange_index`, `last_updated_ts`, `categories`, removed fields, event messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.db.rows import LifecycleEventRow
from app.ingest import write_entries
from app.normalize import normalize_frame
from app.registry import (
    EventUpdate,
    LifecycleEvent,
    RegistrySettings,
    apply_event_updates,
    apply_lifecycle,
    apply_lifecycle_events,
    load_state,
)
from app.registry.records import (
    RecordError,
    event_record,
    market_record,
    series_record,
)
from app.registry.store import upsert_events, upsert_markets, upsert_series
from app.streams import Entry, Frame, encode_entry
from tests.normalize.framing import envelope
from tests.registry.conftest import query

NOW = datetime(2026, 11, 1, tzinfo=UTC)

MARKET = {
    "ticker": "KXBTCD-26NOV0117-T90000",
    "event_ticker": "KXBTCD-26NOV0117",
    "market_type": "binary",
    "status": "active",
    "exchange_index": 2,
    "price_level_structure": "center_deci_edge_centi_cent",
    "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0001"}],
    "yes_bid_dollars": "0.123400",
    "updated_time": "2026-10-31T12:00:00Z",
}
EVENT = {
    "event_ticker": "KXBTCD-26NOV0117",
    "series_ticker": "KXBTCD",
    "title": "Bitcoin",
    "exchange_index": 2,
    "last_updated_ts": "2026-10-31T12:00:00.5Z",
    "fee_type_override": "quadratic_with_combo_maker_fees",
    "fee_multiplier_override": 0.5,
    "product_metadata": {"cadence": "hourly"},
}
SERIES = {
    "ticker": "KXBTCD",
    "title": "Bitcoin daily",
    "frequency": "hourly",
    "fee_type": "quadratic_with_combo_maker_fees",
    "tags": ["crypto"],
    "categories": ["Crypto", "Economics"],
    "exchange_index": 2,
    "last_updated_ts": 1_790_000_000,
    "volume_fp": "123456.00",
}


def test_market_exchange_index_and_removed_fields_are_optional() -> None:
    record = market_record(MARKET)
    assert record.exchange_index == 2
    assert record.price_level_structure == "center_deci_edge_centi_cent"
    # none of the removed fields is required, and an old object (no index) still parses
    legacy = {
        **{k: v for k, v in MARKET.items() if k != "exchange_index"},
        "response_price_units": "usd_cent",
        "fractional_trading_enabled": True,
        "available_on_brokers": False,
        "liquidity_dollars": "0.0000",
    }
    assert market_record(legacy).exchange_index is None
    with pytest.raises(RecordError, match="exchange_index"):
        market_record({**MARKET, "exchange_index": "2"})
    with pytest.raises(RecordError, match="exchange_index"):
        market_record({**MARKET, "exchange_index": 2**40})


def test_event_fields_of_2026_h2() -> None:
    record = event_record(EVENT)
    assert (record.exchange_index, record.last_updated_ts) == (
        2,
        datetime(2026, 10, 31, 12, 0, 0, 500_000, tzinfo=UTC),
    )
    assert record.metadata["product_metadata"] == {"cadence": "hourly"}
    assert record.metadata["fee_multiplier_override"] == 0.5
    bare = event_record({"event_ticker": "E"})
    assert (bare.exchange_index, bare.last_updated_ts) == (None, None)
    # an undocumented last_updated_ts shape is NULL, never a lost event
    assert event_record({**EVENT, "last_updated_ts": {"x": 1}}).last_updated_ts is None
    assert event_record({**EVENT, "last_updated_ts": 1_790_000_000_123}).last_updated_ts == (
        datetime(2026, 9, 21, 14, 13, 20, 123_000, tzinfo=UTC)
    )


def test_series_volume_fp_is_not_stored_and_categories_are_kept() -> None:
    record = series_record(SERIES)
    assert record.exchange_index == 2
    assert record.last_updated_ts == datetime(2026, 9, 21, 14, 13, 20, tzinfo=UTC)
    assert "volume_fp" not in record.metadata and "volume" not in record.metadata
    assert record.metadata["categories"] == ["Crypto", "Economics"]
    assert series_record({"ticker": "S"}).exchange_index is None
    with pytest.raises(RecordError, match="categories"):
        series_record({**SERIES, "categories": "Crypto"})
    # the volume changing with every trade does not change the row
    assert series_record({**SERIES, "volume_fp": "1.00"}) == record


def test_lifecycle_created_carries_the_exchange_index() -> None:
    msg = {"market_ticker": "M-1", "event_type": "created", "exchange_index": 3,
           "additional_metadata": {"event_ticker": "E-1"}}  # fmt: skip
    outcome = apply_lifecycle(None, LifecycleEvent.from_msg(msg, NOW))
    assert outcome.state is not None and outcome.state.exchange_index == 3
    without = apply_lifecycle(None, LifecycleEvent.from_msg({**msg, "exchange_index": None}, NOW))
    assert without.state is not None and without.state.exchange_index is None
    garbage = LifecycleEvent.from_msg({**msg, "exchange_index": "three"}, NOW)
    assert garbage.exchange_index is None  # ignored, never a crash


def _row(raw: str) -> LifecycleEventRow:
    result = normalize_frame(raw, envelope())
    (row,) = result.rows
    assert isinstance(row, LifecycleEventRow)
    return row


EVENT_LIFECYCLE = (
    '{"type": "event_lifecycle", "sid": 13, "msg": {"event_ticker": "KXNEW-26NOV01", '
    '"title": "New", "subtitle": "Nov 1", "collateral_return_type": "MECNET", '
    '"series_ticker": "KXNEW", "strike_date": 1793577600, "exchange_index": 1}}'
)
FEE_UPDATE = (
    '{"type": "event_fee_update", "sid": 13, "msg": {"event_ticker": "KXBTCD-26NOV0117", '
    '"fee_type_override": "flat", "fee_multiplier_override": 0.25}}'
)


def test_event_messages_become_event_updates() -> None:
    update = EventUpdate.from_row(_row(EVENT_LIFECYCLE))
    assert update is not None
    assert update.columns == {
        "title": "New",
        "sub_title": "Nov 1",
        "collateral_return_type": "MECNET",
        "series_ticker": "KXNEW",
        "strike_date": datetime.fromtimestamp(1793577600, UTC),
        "exchange_index": 1,
    }
    fee = EventUpdate.from_row(_row(FEE_UPDATE))
    assert fee is not None and fee.metadata == {
        "fee_type_override": "flat",
        "fee_multiplier_override": 0.25,
    }
    market = _row(
        '{"type": "market_lifecycle_v2", "sid": 13, "msg": {"market_ticker": "M", '
        '"event_type": "metadata_updated"}}'
    )
    assert EventUpdate.from_row(market) is None


def test_registry_tables_store_the_new_columns(conn: Any) -> None:
    upsert_series(conn, [series_record(SERIES)])
    upsert_events(conn, [event_record(EVENT)])
    write = upsert_markets(conn, [market_record(MARKET)], fetched_at=NOW)
    assert write.inserted == 1
    conn.commit()
    assert query(conn, "SELECT exchange_index, last_updated_ts FROM series") == [
        (2, datetime(2026, 9, 21, 14, 13, 20, tzinfo=UTC))
    ]
    assert query(conn, "SELECT exchange_index FROM events") == [(2,)]
    assert query(conn, "SELECT exchange_index, price_level_structure FROM markets") == [
        (2, "center_deci_edge_centi_cent")
    ]
    # unchanged objects are not rewritten (the new columns compare equal)
    again = upsert_markets(conn, [market_record(MARKET)], fetched_at=NOW)
    assert (again.inserted, again.updated) == (0, 0)
    moved = upsert_markets(conn, [market_record({**MARKET, "exchange_index": 4})], fetched_at=NOW)
    assert moved.updated == 1

    # event-level lifecycle messages update and create events
    updates = [EventUpdate.from_row(_row(raw)) for raw in (FEE_UPDATE, EVENT_LIFECYCLE)]
    assert apply_event_updates(conn, [u for u in updates if u]) == 2
    conn.commit()
    rows = dict(query(conn, "SELECT event_ticker, metadata FROM events"))
    assert rows["KXBTCD-26NOV0117"]["fee_type_override"] == "flat"
    assert rows["KXBTCD-26NOV0117"]["fee_multiplier_override"] == 0.25
    assert rows["KXBTCD-26NOV0117"]["product_metadata"] == {"cadence": "hourly"}
    assert query(
        conn, "SELECT sub_title, series_ticker, exchange_index FROM events "
        "WHERE event_ticker = 'KXNEW-26NOV01'"
    ) == [("Nov 1", "KXNEW", 1)]  # fmt: skip
    unknown = EventUpdate.from_msg(
        "event_fee_update", {"event_ticker": "NOPE", "fee_type_override": None}
    )
    assert apply_event_updates(conn, [unknown]) == 0  # left to reconcile


def test_price_level_structure_update_reaches_the_market_row(conn: Any) -> None:
    upsert_markets(conn, [market_record(MARKET)], fetched_at=NOW)
    conn.commit()
    raw = (
        '{"type": "market_lifecycle_v2", "sid": 13, "msg": {"market_ticker": '
        '"KXBTCD-26NOV0117-T90000", "event_type": "price_level_structure_updated", '
        '"price_level_structure": "tapered_deci_cent", '
        '"price_ranges": [{"start": "0.0000", "end": "0.1000", "step": "0.0010"}]}}'
    )
    event = LifecycleEvent.from_row(_row(raw))
    assert event is not None
    report = apply_lifecycle_events(conn, [event], now=NOW)
    conn.commit()
    assert report.applied == 1
    state = load_state(conn, MARKET["ticker"])
    conn.commit()
    assert state is not None and state.price_level_structure == "tapered_deci_cent"
    assert state.exchange_index == 2


def test_ingest_applies_event_messages_in_the_batch_transaction(conn: Any) -> None:
    """`write_entries` with registry settings stores the frames and updates `events` in the
    same transaction (issue 9 item 9: event_lifecycle / event_fee_update)."""
    upsert_events(conn, [event_record(EVENT)])
    conn.commit()
    frames = [
        Frame(raw.encode(), 1_790_000_000_000_000_000 + i, "g-life-1", 13, None)
        for i, raw in enumerate((FEE_UPDATE, EVENT_LIFECYCLE))
    ]
    entry = Entry("1-0", encode_entry(frames), frames, 1)
    counts = write_entries(
        conn, [entry], gatherer="g", stream="kd:g:lifecycle", registry=RegistrySettings()
    )
    assert counts["lifecycle_events"] == 2
    rows = dict(query(conn, "SELECT event_ticker, metadata FROM events"))
    assert rows["KXBTCD-26NOV0117"]["fee_type_override"] == "flat"
    assert query(
        conn, "SELECT title, exchange_index FROM events WHERE event_ticker = 'KXNEW-26NOV01'"
    ) == [("New", 1)]

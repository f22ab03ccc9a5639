"""Lifecycle messages: typed columns, payload kept whole, content hash for production union."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from app.db.rows import LifecycleEventRow
from app.normalize import payload_hash
from tests.normalize import examples
from tests.normalize.framing import LEGACY_NS, dead_reason, one_row


def test_created() -> None:
    row = one_row(examples.LIFECYCLE_CREATED)
    assert isinstance(row, LifecycleEventRow)
    assert (row.msg_type, row.event_type) == ("market_lifecycle_v2", "created")
    assert row.market_ticker == "KXBTCD-26JAN2310-T105000"
    assert row.event_ticker == "KXBTCD-26JAN2310"  # from additional_metadata
    assert row.open_ts == datetime(2025, 1, 22, 14, 0, tzinfo=UTC)
    assert row.close_ts == datetime(2025, 1, 22, 15, 0, tzinfo=UTC)
    assert row.exchange_ts is None  # lifecycle frames carry no exchange time
    assert row.payload == orjson.loads(examples.LIFECYCLE_CREATED)["msg"]
    assert row.sid == 13


def test_determined_with_dollar_settlement() -> None:
    row = one_row(examples.LIFECYCLE_DETERMINED)
    assert isinstance(row, LifecycleEventRow)
    assert (row.event_type, row.result, row.settlement_value) == ("determined", "yes", 1_000_000)
    assert row.determination_ts == datetime(2025, 1, 22, 15, 1, tzinfo=UTC)


def test_legacy_cent_settlement() -> None:
    raw = examples.LIFECYCLE_DETERMINED.replace(
        '"settlement_value": "1.0000"', '"settlement_value": 100'
    )
    row = one_row(raw, LEGACY_NS)
    assert isinstance(row, LifecycleEventRow)
    assert row.settlement_value == 1_000_000
    assert "dollar string" in dead_reason(raw)  # fixed-point era: must be a dollar string


def test_event_lifecycle_and_fee_update() -> None:
    event = one_row(examples.EVENT_LIFECYCLE)
    assert isinstance(event, LifecycleEventRow)
    assert (event.event_type, event.market_ticker, event.event_ticker) == (
        "event_lifecycle",
        None,
        "KXBTCD-26JAN2310",
    )
    fee = one_row(examples.EVENT_FEE_UPDATE)
    assert isinstance(fee, LifecycleEventRow)
    assert fee.event_type == "event_fee_update"
    assert fee.payload["fee_multiplier_override"] is None


def test_multivariate_and_pause() -> None:
    row = one_row(examples.MULTIVARIATE_LIFECYCLE)
    assert isinstance(row, LifecycleEventRow)
    assert row.msg_type == "multivariate_market_lifecycle"
    assert (row.event_type, row.is_deactivated) == ("activated", False)


def test_sending_ts_is_the_exchange_time() -> None:
    raw = examples.LIFECYCLE_DETERMINED.replace(
        '"sid": 13,', '"sid": 13, "sending_ts_ms": 1737558060500,'
    )
    row = one_row(raw)
    assert isinstance(row, LifecycleEventRow)
    assert row.exchange_ts == datetime(2025, 1, 22, 15, 1, 0, 500000, tzinfo=UTC)


def test_seed_v1_market_lifecycle() -> None:
    raw = (
        '{"type":"market_lifecycle","msg":{"market_ticker":"M","event_type":"status_change",'
        '"old_status":"open","new_status":"closed","result":"","ts":1737558000}}'
    )
    row = one_row(raw)
    assert isinstance(row, LifecycleEventRow)
    assert row.exchange_ts == datetime(2025, 1, 22, 15, 0, tzinfo=UTC)
    assert row.result is None


def test_payload_hash_ignores_key_order_but_not_content() -> None:
    a = {"market_ticker": "M", "event_type": "deactivated", "is_deactivated": True}
    b = {"is_deactivated": True, "event_type": "deactivated", "market_ticker": "M"}
    assert payload_hash(a) == payload_hash(b)
    assert payload_hash(a) != payload_hash({**a, "is_deactivated": False})
    row = one_row('{"type":"market_lifecycle_v2","sid":1,"msg":' + orjson.dumps(b).decode() + "}")
    assert isinstance(row, LifecycleEventRow)
    assert row.payload_hash == payload_hash(a) and len(row.payload_hash) == 32


def test_malformed_lifecycle() -> None:
    assert "missing 'event_type'" in dead_reason(
        '{"type":"market_lifecycle_v2","msg":{"market_ticker":"M"}}'
    )
    assert "missing 'market_ticker'" in dead_reason(
        '{"type":"market_lifecycle_v2","msg":{"event_type":"created"}}'
    )
    assert "Unix seconds" in dead_reason(
        '{"type":"market_lifecycle_v2","msg":{"market_ticker":"M","event_type":"created",'
        '"open_ts":"tomorrow"}}'
    )
    # PostgreSQL jsonb cannot hold \u0000: refused here, not at COPY time.
    assert "NUL" in dead_reason(
        '{"type":"market_lifecycle_v2","msg":{"market_ticker":"M","event_type":"created",'
        '"additional_metadata":{"title":"a\\u0000b"}}}'
    )
    assert "missing 'event_ticker'" in dead_reason('{"type":"event_lifecycle","msg":{"x":1}}')

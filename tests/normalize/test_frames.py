"""normalize_frame as a whole: verdicts, raw frames, dead letters, version choice, no floats."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.db.rows import DeadLetterRow, OrderbookDeltaRow, RawFrameRow
from app.normalize import (
    FormatVersion,
    FrameEnvelope,
    Verdict,
    batch_rows,
    frame_facts,
    normalize_frame,
    parse_version,
    version_for_capture_time,
)
from tests.normalize import examples
from tests.normalize.framing import LEGACY_NS, NEWEST_NS, dead_reason, envelope


@pytest.mark.parametrize("raw", examples.NEWEST_DATA_FRAMES)
def test_every_newest_frame_maps_to_one_row(raw: str) -> None:
    result = normalize_frame(raw, envelope())
    assert result.verdict is Verdict.ROWS, result.reason
    assert len(result.rows) == 1 and result.dead_letter is None
    assert result.version is FormatVersion.FIXED_POINT


@pytest.mark.parametrize("raw", examples.LEGACY_DATA_FRAMES)
def test_every_legacy_frame_maps_to_one_row(raw: str) -> None:
    result = normalize_frame(raw, envelope(LEGACY_NS))
    assert result.verdict is Verdict.ROWS, result.reason
    assert result.version is FormatVersion.LEGACY


def _values(value: object) -> list[object]:
    if isinstance(value, tuple | list):
        return [v for item in value for v in _values(item)]
    return [value]


@pytest.mark.parametrize(
    ("raw", "ns"),
    [(raw, NEWEST_NS) for raw in examples.NEWEST_DATA_FRAMES]
    + [(raw, LEGACY_NS) for raw in examples.LEGACY_DATA_FRAMES],
)
def test_no_float_or_decimal_in_any_typed_column(raw: str, ns: int) -> None:
    result = normalize_frame(raw, envelope(ns))
    for row in result.all_rows():
        for name, value in zip(row._fields, row, strict=True):
            if name == "payload":  # the message as received (jsonb), not a unit column
                continue
            for item in _values(value):
                assert not isinstance(item, float | Decimal), (type(row).__name__, name, item)
                assert item is None or isinstance(item, int | str | bytes | datetime), (name, item)


def test_raw_frame_keeps_exact_bytes_and_envelope() -> None:
    env = envelope(connection_id="conn-9", batch_pos=41, gap=True, sid=2, seq=3)
    result = normalize_frame(examples.DELTA, env)
    raw = result.raw_frame
    assert isinstance(raw, RawFrameRow)
    assert raw.raw == examples.DELTA.encode()
    assert (raw.connection_id, raw.batch_pos, raw.gap, raw.sid, raw.seq) == (
        "conn-9",
        41,
        True,
        2,
        3,
    )
    assert (raw.msg_type, raw.market_ticker) == ("orderbook_delta", "FED-23DEC-T3.00")
    assert raw.received_at == datetime(2026, 9, 21, 14, 13, 20, 123456, tzinfo=UTC)
    assert result.all_rows() == (result.rows[0],)  # the bytes are stored per stream entry
    assert frame_facts(examples.DELTA, env) == raw


@pytest.mark.parametrize("raw", examples.CONTROL)
def test_command_replies_are_control_frames(raw: str) -> None:
    result = normalize_frame(raw, envelope())
    assert result.verdict is Verdict.CONTROL
    assert result.rows == () and result.dead_letter is None
    assert result.all_rows() == ()
    assert result.raw_frame.msg_type == frame_facts(raw, envelope()).msg_type


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "malformed JSON"),
        ('{"type": "trade", "msg": {', "malformed JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"msg": {}}', "no 'type'"),
        ('{"type": 7}', "no 'type'"),
        ('{"type": "ticker_v2", "msg": {"x": 1}}', "unsupported message type 'ticker_v2'"),
        ('{"type": "fill", "msg": {"x": 1}}', "unsupported message type 'fill'"),
        ('{"type": "trade", "sid": 1}', "without a 'msg' object"),
        ('{"type": "trade", "sid": 1, "msg": [1]}', "without a 'msg' object"),
        ('{"type": "trade", "sid": "one", "msg": {"x": 1}}', "'sid' must be an integer"),
    ],
)
def test_bad_frames_become_dead_letters(raw: str, reason: str) -> None:
    assert reason in dead_reason(raw)


def test_dead_letter_carries_raw_bytes_reason_and_origin() -> None:
    raw = b'{"type": "trade", \xff\xfe broken'
    env = envelope(stream="kd:g1:trade", entry_id="1700000000000-0", batch_pos=5, sid=9)
    result = normalize_frame(raw, env)
    dead = result.dead_letter
    assert isinstance(dead, DeadLetterRow)
    assert dead.raw == raw and result.raw_frame.raw == raw
    assert (dead.stream, dead.entry_id, dead.batch_pos, dead.sid) == (
        "kd:g1:trade",
        "1700000000000-0",
        5,
        9,
    )
    assert dead.stage == "normalize" and dead.reason.startswith("malformed JSON")
    assert result.all_rows() == (dead,)
    assert frame_facts(raw, env) == result.raw_frame


def test_listener_verdict_fills_and_checks_sid_seq() -> None:
    no_seq = examples.DELTA.replace('"seq": 3,', "")
    row = normalize_frame(no_seq, envelope(sid=2, seq=3)).rows[0]
    assert (row.sid, row.seq) == (2, 3)  # type: ignore[union-attr]
    reason = dead_reason(examples.DELTA, seq=4)
    assert "listener verdict seq=4 disagrees with the frame's seq=3" in reason


def test_capture_time_selects_the_version() -> None:
    assert version_for_capture_time(LEGACY_NS) is FormatVersion.LEGACY
    assert version_for_capture_time(NEWEST_NS) is FormatVersion.FIXED_POINT
    switch = int(datetime(2026, 3, 13, tzinfo=UTC).timestamp()) * 1_000_000_000
    assert version_for_capture_time(switch - 1) is FormatVersion.LEGACY
    assert version_for_capture_time(switch) is FormatVersion.FIXED_POINT
    assert version_for_capture_time(0) is FormatVersion.LEGACY
    assert parse_version("legacy") is FormatVersion.LEGACY
    with pytest.raises(ValueError, match="known: legacy, fixed_point"):
        parse_version("v3")


def test_declared_version_wins_over_capture_time() -> None:
    result = normalize_frame(examples.DELTA, envelope(LEGACY_NS), version=FormatVersion.FIXED_POINT)
    assert result.version is FormatVersion.FIXED_POINT and result.verdict is Verdict.ROWS


def test_bad_envelope_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="received_ns"):
        FrameEnvelope(received_ns=-1, connection_id="c", batch_pos=0, gatherer="g")
    with pytest.raises(ValueError, match="connection_id"):
        FrameEnvelope(received_ns=1, connection_id="", batch_pos=0, gatherer="g")
    with pytest.raises(TypeError):
        FrameEnvelope(received_ns=1.5, connection_id="c", batch_pos=0, gatherer="g")  # type: ignore[arg-type]


def test_batch_rows_flattens_in_order() -> None:
    results = [
        normalize_frame(raw, envelope(batch_pos=i)) for i, raw in enumerate(examples.CONTROL)
    ]
    results.append(normalize_frame("garbage", envelope(batch_pos=9)))
    results.append(normalize_frame(examples.DELTA, envelope(batch_pos=10)))
    rows = batch_rows(results)
    assert [type(row) for row in rows] == [DeadLetterRow, OrderbookDeltaRow]


def _mutations(rng: random.Random, text: str) -> list[str]:
    out = []
    for _ in range(60):
        chars = list(text)
        action = rng.randrange(4)
        where = rng.randrange(len(chars))
        if action == 0:
            out.append(text[:where])
        elif action == 1:
            chars[where] = rng.choice('{}[]":,0123456789-.eE \\ntruefalsnul\x00')
            out.append("".join(chars))
        elif action == 2:
            del chars[where : where + rng.randrange(1, 8)]
            out.append("".join(chars))
        else:
            out.append(text.replace('"', "", rng.randrange(1, 4)))
    return out


def test_mutated_frames_never_raise_and_never_hit_a_normalizer_bug() -> None:
    rng = random.Random(20261124)
    corpus = examples.NEWEST_DATA_FRAMES + examples.LEGACY_DATA_FRAMES + examples.CONTROL
    seen = {Verdict.ROWS: 0, Verdict.DEAD: 0, Verdict.CONTROL: 0}
    for text in corpus:
        for mutated in _mutations(rng, text):
            for version in FormatVersion:
                result = normalize_frame(mutated, envelope(), version=version)
                seen[result.verdict] += 1
                assert result.raw_frame.raw == mutated.encode("utf-8", "surrogatepass")
                if result.verdict is Verdict.DEAD:
                    assert not result.reason.startswith("normalizer error"), (mutated, result)  # type: ignore[union-attr]
                else:
                    assert result.dead_letter is None
    assert seen[Verdict.DEAD] > 100 and seen[Verdict.ROWS] > 100

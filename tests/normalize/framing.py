"""Building envelopes and unwrapping results for normalizer tests."""

from __future__ import annotations

from typing import Any

from app.db.rows import Row
from app.normalize import FormatVersion, FrameEnvelope, Normalized, Verdict, normalize_frame

NEWEST_NS = 1_790_000_000_123_456_789  # 2026-09-21T14:13:20.123456789Z: fixed-point era
LEGACY_NS = 1_770_897_990_000_000_000  # 2026-02-12T12:06:30Z: legacy dual-format era


def envelope(received_ns: int = NEWEST_NS, **overrides: Any) -> FrameEnvelope:
    values: dict[str, Any] = {
        "received_ns": received_ns,
        "connection_id": "conn-1",
        "batch_pos": 0,
        "gatherer": "g1",
    }
    values.update(overrides)
    return FrameEnvelope(**values)


def one_row(
    raw: str | bytes, received_ns: int = NEWEST_NS, version: FormatVersion | None = None, **env: Any
) -> Row:
    result = normalize_frame(raw, envelope(received_ns, **env), version=version)
    assert result.verdict is Verdict.ROWS, result.reason
    assert len(result.rows) == 1
    return result.rows[0]


def dead_reason(
    raw: str | bytes, received_ns: int = NEWEST_NS, version: FormatVersion | None = None, **env: Any
) -> str:
    result: Normalized = normalize_frame(raw, envelope(received_ns, **env), version=version)
    assert result.verdict is Verdict.DEAD, result
    assert result.rows == ()
    assert result.dead_letter is not None
    return result.dead_letter.reason

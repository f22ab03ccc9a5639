"""Kalshi WebSocket field-format versions and how a frame's mapper version is chosen.

Kalshi changes field formats every few weeks (kalshi-api.md §6), so a frame is mapped by the
mapper of the format it was captured in, chosen explicitly (tardis-node style, STYLE §1):

- a declared version (`normalize_frame(..., version=FormatVersion.LEGACY)`): replays of old
  captures, or the simulator run with `simulator.format: legacy`; or
- by capture time: the version in effect when the listener received the frame.

`LEGACY` covers everything before the 2026-03-12 removal of integer fields: the dual format
(integer cents and counts beside `*_dollars` / `*_fp`) and the older integer-only shape (the
Aug-2025 delta `{"price": 51, "delta": -1, ...}`). The date the dollar strings first appeared is
unknown (kalshi-api.md §6), but one mapper serves both shapes exactly: it reads the dollar and
fixed-point fields when present and falls back to the integers otherwise (where both exist they
agree, except subpenny prices, which only the dollar string carries).

`FIXED_POINT` is the newest format: `*_dollars` / `*_fp` strings only, `ts_ms` times. It reads
no integer field, tolerates missing deprecated fields and ignores unknown ones, but refuses a
frame carrying a removed integer field *without* its replacement (a legacy frame under the wrong
version) instead of silently storing an empty or partial row.

The switch is dated the first full UTC day after the removal: the legacy mapper also reads
fixed-point frames, so frames from the transition day map correctly either way.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime
from enum import StrEnum

from app.normalize.envelope import datetime_from_ns


class FormatVersion(StrEnum):
    LEGACY = "legacy"
    FIXED_POINT = "fixed_point"


# (first capture instant, version), ascending. A new Kalshi format = a new member, its mappers
# in app/normalize/*.py, and one line here.
EFFECTIVE_FROM: tuple[tuple[datetime, FormatVersion], ...] = (
    (datetime(1970, 1, 1, tzinfo=UTC), FormatVersion.LEGACY),
    (datetime(2026, 3, 13, tzinfo=UTC), FormatVersion.FIXED_POINT),
)
_STARTS = [start for start, _ in EFFECTIVE_FROM]


def version_for_capture_time(received_ns: int) -> FormatVersion:
    """The format version in effect when a frame was received (Unix ns)."""
    index = bisect_right(_STARTS, datetime_from_ns(received_ns)) - 1
    return EFFECTIVE_FROM[max(index, 0)][1]


def parse_version(name: str) -> FormatVersion:
    """A declared version from configuration (`legacy`, `fixed_point`)."""
    try:
        return FormatVersion(name)
    except ValueError:
        known = ", ".join(v.value for v in FormatVersion)
        raise ValueError(f"unknown format version {name!r}; known: {known}") from None

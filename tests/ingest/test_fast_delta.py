"""The book-delta fast path writes exactly what the general mappers would, or declines.

`app.ingest.fast_delta.delta_line` must never change a frame's outcome: for every frame it
accepts, the general path (`normalize_frame` + the COPY encoder) gives one delta row with the
same value in every column; for every frame the general path dead-letters, it declines.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import orjson
import pytest

from app.db.copy import encode_rows
from app.db.rows import OrderbookDeltaRow
from app.db.tables import ORDERBOOK_DELTAS
from app.ingest.fast_delta import COLUMNS, delta_line, micros_text, uses_fast_path
from app.normalize import FormatVersion, Verdict, normalize_frame
from tests.normalize import examples
from tests.normalize.framing import LEGACY_NS, NEWEST_NS, envelope

PREFIX = "g1\tconn-1\t"
TIME_COLUMNS = ("received_at", "exchange_ts")


def _columns(line: str, names: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = dict(zip(names, line.rstrip("\n").split("\t"), strict=True))
    for name in TIME_COLUMNS:  # the same instant may be spelled two ways
        if values[name] != "\\N":
            values[name] = datetime.fromisoformat(values[name])
    return values


def _fast(raw: str, ns: int = NEWEST_NS, pos: int = 4, sid: int | None = None) -> str | None:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return delta_line(
        parsed, prefix=PREFIX, received_ns=ns, batch_pos=pos, listener_sid=sid, listener_seq=None
    )


def _check(raw: str, ns: int = NEWEST_NS, sid: int | None = None) -> bool:
    """Assert the two paths agree on `raw`; True when the fast path took it."""
    line = _fast(raw, ns, sid=sid)
    result = normalize_frame(raw, envelope(ns, batch_pos=4, sid=sid))
    if line is None:
        return False
    assert result.verdict is Verdict.ROWS, (raw, result.reason)
    (row,) = result.rows
    assert isinstance(row, OrderbookDeltaRow)
    general = _columns(encode_rows(ORDERBOOK_DELTAS, [row]), ORDERBOOK_DELTAS.columns)
    assert _columns(line, COLUMNS) == general, raw
    return True


def test_newest_example_and_simulator_frames_take_the_fast_path() -> None:
    assert _check(examples.DELTA)
    no_ts = examples.DELTA.replace('"ts": "2022-11-22T20:44:01Z", "ts_ms": 1669149841000,', "")
    assert _check(no_ts)  # no exchange time at all: NULL
    line = _fast(examples.DELTA)
    assert line is not None and line.startswith(PREFIX + "FED-23DEC-T3.00\t")
    assert "\t960000\t-5400\n" in line


def test_frames_the_fast_path_declines() -> None:
    legacy = examples.DELTA_AUG_2025
    assert _fast(legacy) is None  # integer-cent fields
    assert _fast(examples.TRADE) is None and _fast(examples.SNAPSHOT) is None
    only_ts = examples.DELTA.replace('"ts_ms": 1669149841000,', "")
    assert _fast(only_ts) is None  # the deprecated `ts` alone: general reader
    assert _fast(examples.DELTA, sid=9) is None  # listener verdict disagrees: dead letter
    assert not _check(examples.DELTA, sid=9)


def test_capture_time_and_declared_version() -> None:
    assert uses_fast_path(NEWEST_NS, None) and not uses_fast_path(LEGACY_NS, None)
    assert uses_fast_path(LEGACY_NS, FormatVersion.FIXED_POINT)
    assert not uses_fast_path(NEWEST_NS, FormatVersion.LEGACY)


def test_micros_text_is_exact() -> None:
    assert micros_text(0) == "1970-01-01T00:00:00.000000+00:00"
    assert micros_text(1_790_000_000_123_456) == "2026-09-21T14:13:20.123456+00:00"


WEIRD_NUMBERS = (
    "0.5", "0.56", "0.5600", "0.560000", "0.5600001", "1", "12", "-0.56", "+0.56", ".5",
    "0.", "1e2", "NaN", "Infinity", " 0.56", "0.56 ", "\u0660.\u0665", "0x10", "", "-", "--1",
    "1.2.3",
    "0.00", "-0.00", "99999999999999999999", "1" * 30 + ".0",
)  # fmt: skip
WEIRD_TEXT = (
    "", "a\tb", "a\nb", "a\\b", "a\x00b", "ünï", "a b", "\u2028", "é\u0301", "x" * 300, "\x7f",
)  # fmt: skip
WEIRD_VALUES: tuple[Any, ...] = (
    None, 1, 1.5, True, [], {}, "yes", "no", "YES", -1, 0, 2**63, "1669149841000",
)  # fmt: skip


def _mutants(rng: random.Random) -> list[str]:
    base = orjson.loads(examples.DELTA)
    out = []
    for _ in range(1500):
        frame = orjson.loads(orjson.dumps(base))
        msg = frame["msg"]
        for _ in range(rng.randint(1, 3)):
            choice = rng.randrange(9)
            if choice == 0:
                msg[rng.choice(("price_dollars", "delta_fp"))] = rng.choice(WEIRD_NUMBERS)
            elif choice == 1:
                msg[rng.choice(("market_ticker", "market_id", "side"))] = rng.choice(WEIRD_TEXT)
            elif choice == 2:
                key = rng.choice((*msg.keys(), "price", "delta", "extra"))
                msg[key] = rng.choice(WEIRD_VALUES + WEIRD_NUMBERS[:5])
            elif choice == 3:
                msg.pop(rng.choice(tuple(msg)), None)
            elif choice == 4:
                msg["ts_ms"] = rng.choice((-1, 0, 253_402_300_799_999, 253_402_300_800_000, 1.0))
            elif choice == 5:
                frame[rng.choice(("sid", "seq"))] = rng.choice(WEIRD_VALUES)
            elif choice == 6:
                frame["type"] = rng.choice(("orderbook_snapshot", "orderbook_delta ", "trade"))
            elif choice == 7:
                frame["msg"] = rng.choice(([], "x", None, msg))
            else:
                msg["side"] = rng.choice(("yes", "no"))
                msg["delta_fp"] = rng.choice(("-0.01", "0.01", "123456.78", "-99.5"))
        out.append(orjson.dumps(frame).decode())
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_mutants_agree_with_the_general_path(seed: int) -> None:
    taken = sum(_check(raw) for raw in _mutants(random.Random(seed)))
    assert 100 < taken < 1500  # both outcomes were exercised

"""Stream names and the stable book partitioning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.streams import StreamNames, book_partition, dead_stream_for

# crc32(ticker UTF-8) computed by hand once; a change of hash algorithm breaks these.
EXPECTED = {
    "FED-23DEC-T3.00": (976448326, 6),
    "KXBTCD-26JAN2310-T105000": (2318055526, 6),
    "HIGHNY-22DEC23-B53.5": (1172649682, 2),
    "KXMLBGAME-25AUG12SDSF-SD": (3576005137, 1),
}


@pytest.mark.parametrize(("ticker", "expected"), EXPECTED.items())
def test_partition_is_the_documented_crc32(ticker: str, expected: tuple[int, int]) -> None:
    crc, partition_of_8 = expected
    assert book_partition(ticker, 8) == partition_of_8
    assert book_partition(ticker, 64) == crc % 64
    assert book_partition(ticker, 1) == 0


def test_partition_is_the_same_in_other_processes() -> None:
    code = (
        "from app.streams import book_partition;"
        f"print([book_partition(t, 8) for t in {list(EXPECTED)!r}])"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(proc.stdout.strip())
    assert outputs == {str([p for _, p in EXPECTED.values()])}


def test_partitions_spread_evenly() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[book_partition(f"KXBTCD-26JAN{i:04d}-T{i * 7}", 8)] += 1
    assert min(counts) > 900 and max(counts) < 1100


def test_routing_by_type_and_ticker() -> None:
    names = StreamNames("g1", 8)
    assert names.route("orderbook_delta", "FED-23DEC-T3.00") == "kd:g1:book:6"
    assert names.route("orderbook_snapshot", "FED-23DEC-T3.00") == "kd:g1:book:6"
    assert names.route("orderbook_delta", "HIGHNY-22DEC23-B53.5") == "kd:g1:book:2"
    assert names.route("orderbook_delta", None) == "kd:g1:other"
    assert names.route("trade", "X") == "kd:g1:trade"
    assert names.route("ticker", "X") == "kd:g1:ticker"
    for lifecycle in ("market_lifecycle_v2", "multivariate_market_lifecycle", "event_lifecycle"):
        assert names.route(lifecycle, "X") == "kd:g1:lifecycle"
    for other in ("subscribed", "ok", "error", "brand_new_type", None):
        assert names.route(other, None) == "kd:g1:other"
    assert names.dead == "kd:g1:dead"
    assert len(names.data_streams) == 8 + 4
    assert names.all_streams[-1] == names.dead


def test_dead_letter_stream_names() -> None:
    assert dead_stream_for("kd:g1:book:3") == "kd:g1:dead"
    assert dead_stream_for("kd:g1:trade") == "kd:g1:dead"
    assert dead_stream_for("kd:g1:dead") == "kd:g1:dead:dead"
    assert dead_stream_for("elsewhere") == "elsewhere:dead"


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ValueError):
        StreamNames("a:b", 4)
    with pytest.raises(ValueError):
        StreamNames("g1", 0)
    with pytest.raises(ValueError):
        book_partition("X", 0)

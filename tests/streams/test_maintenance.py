"""Safe trimming, the consumer janitor and stream stats, on real Redis."""

from __future__ import annotations

import time

import redis

from app.streams import (
    Frame,
    drain,
    encode_entry,
    reap_idle_consumers,
    stream_stats,
    trim_stream,
)

GROUP = "writers"


def fill(client: redis.Redis, stream: str, n: int) -> list[bytes]:
    return [client.xadd(stream, encode_entry([Frame(b"%d" % i, i, "c")])) for i in range(n)]


def test_safe_trim_never_removes_pending_or_undelivered_entries(client, names) -> None:
    stream = names.trade
    ids = fill(client, stream, 30)
    client.xgroup_create(stream, GROUP, id="0")
    client.xreadgroup(GROUP, "acker", {stream: ">"}, count=10)
    client.xack(stream, GROUP, *ids[:10])  # 1-10 done
    client.xreadgroup(GROUP, "crashed", {stream: ">"}, count=10)  # 11-20 pending forever
    # 21-30 never delivered

    result = trim_stream(client, stream, approximate=False)
    assert result.status == "ok" and result.threshold == ids[10].decode()
    assert result.removed == 10 and client.xlen(stream) == 20

    # Every pending entry is still claimable (none reported deleted), every new one readable.
    seen: list[str] = []
    out = drain(
        client,
        stream,
        GROUP,
        "rescuer",
        lambda es: seen.extend(e.id for e in es),
        count=100,
        min_idle_ms=0,
    )
    assert out.deleted == 0 and out.reclaimed == 10
    assert seen == [i.decode() for i in ids[10:]]

    # Now everything is acked: the trim floor is the last delivered id (kept, MINID is strict).
    final = trim_stream(client, stream, approximate=False)
    assert final.removed == 19 and client.xlen(stream) == 1


def test_the_slowest_group_sets_the_floor(client, names) -> None:
    stream = names.ticker
    ids = fill(client, stream, 10)
    client.xgroup_create(stream, GROUP, id="0")
    client.xgroup_create(stream, "audit", id="0")
    drain(client, stream, GROUP, "w", lambda es: None)
    assert trim_stream(client, stream, approximate=False).removed == 0  # audit read nothing
    client.xreadgroup("audit", "a", {stream: ">"}, count=4)
    result = trim_stream(client, stream, approximate=False)
    assert result.threshold == ids[0].decode() and result.removed == 0  # 4 pending in audit
    client.xack(stream, "audit", *ids[:4])
    assert trim_stream(client, stream, approximate=False).removed == 3  # keeps ids[3]


def test_streams_without_groups_are_never_trimmed(client, names) -> None:
    fill(client, names.lifecycle, 5)
    result = trim_stream(client, names.lifecycle, approximate=False)
    assert (result.status, result.removed, result.threshold) == ("no group", 0, None)
    assert trim_stream(client, names.book(3)).status == "no stream"


def test_retention_keeps_young_acked_entries(client, names) -> None:
    fill(client, names.trade, 5)
    drain(client, names.trade, GROUP, "w", lambda es: None)
    assert trim_stream(client, names.trade, retain_ms=60_000, approximate=False).removed == 0
    assert trim_stream(client, names.trade, approximate=False).removed == 4


def test_janitor_deletes_only_idle_consumers_without_pending(client, names) -> None:
    stream = names.trade
    fill(client, stream, 3)
    client.xgroup_create(stream, GROUP, id="0")
    client.xgroup_createconsumer(stream, GROUP, "dead:1")
    client.xreadgroup(GROUP, "holding:2", {stream: ">"}, count=1)
    time.sleep(0.35)
    client.xgroup_createconsumer(stream, GROUP, "fresh:3")
    deleted = reap_idle_consumers(client, stream, GROUP, idle_ms=300)
    assert deleted == ["dead:1"]
    left = {c["name"].decode() for c in client.xinfo_consumers(stream, GROUP)}
    assert left == {"holding:2", "fresh:3"}
    assert reap_idle_consumers(client, names.book(0), GROUP, idle_ms=0) == []


def test_stream_stats_report_length_lag_pending_and_age(client, names) -> None:
    stream = names.trade
    fill(client, stream, 8)
    client.xgroup_create(stream, GROUP, id="0")
    client.xreadgroup(GROUP, "w", {stream: ">"}, count=3)
    time.sleep(0.05)
    stats = stream_stats(client, stream)
    assert stats.length == 8
    (group,) = stats.groups
    assert (group.name, group.consumers, group.pending, group.lag) == (GROUP, 1, 3, 5)
    assert group.oldest_pending_age_ms is not None and group.oldest_pending_age_ms >= 40
    empty = stream_stats(client, names.book(1))
    assert empty.length == 0 and empty.groups == ()

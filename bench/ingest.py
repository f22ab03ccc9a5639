"""Benchmarks of the ingest path (issue 3 item 9): the database write path and the listener.

Usage:
    .venv/bin/python bench/ingest.py db [--frames 200000] [--entry-frames 500] [--entries 10]
    .venv/bin/python bench/ingest.py listener [--seconds 10] [--markets 300] [--rate 200000]
    .venv/bin/python bench/ingest.py db --profile         # cProfile of our path, top costs

`db` creates a scratch database (`kd_bench_ingest_<pid>`, migrated with
`app.db.migrations.upgrade`, dropped at the end) and writes the same realistic `orderbook_delta`
frames (the simulator's current wire format, ~250 B) several ways, each into its own fresh daily
partitions of the same tables (same indexes), one commit per `--entries` x `--entry-frames`:

1. `ours`: stream entries (`encode_entry` -> `decode_entry`, `--entry-frames` frames each) handed
   to `app.ingest.handler.write_entries` `--entries` at a time, exactly as a drain does:
   normalize + COPY to staging + INSERT ... ON CONFLICT DO NOTHING for `orderbook_deltas` AND
   `raw_frames` + commit. Every frame writes two rows (one delta, one raw frame).
2. `ours, deltas only` / `raw_frames only`: the already-normalized rows of one table through
   `app.db.copy.write_rows` + commit: the staging path without normalize.
3. `bare COPY`: the same delta rows, encoded with the same COPY encoder, `COPY orderbook_deltas
   FROM STDIN` + commit: the physical-limit anchor (DESIGN §4); also of both tables, and with
   the COPY text built before the clock starts (server side only).

It prints rows/s of each, the split of our path (normalize, encoding, server) and the ratios
against the 70 % target.

`listener` starts `kalshi-data sim` (subprocess, no truth) with a very high `--rate` and runs the
real `app.listener.Listener` in this process, publishing to Redis (`--redis-url`, a throw-away
gatherer whose keys are deleted afterwards). After the subscriptions are up and a warm-up, it
counts the frames the listener read over `--seconds`, the CPU seconds this process used
(`resource.getrusage`), the simulator's CPU (/proc/<pid>/stat) and Redis's (INFO cpu), and
prints frames/s wall and frames per listener CPU-second. `--profile` adds cProfile's top costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import redis

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.db.copy import encode_rows  # noqa: E402
from app.db.migrations import upgrade  # noqa: E402
from app.db.partitions import ensure_partitions  # noqa: E402
from app.db.raw_batches import encode_binary  # noqa: E402
from app.db.rows import OrderbookDeltaRow  # noqa: E402
from app.ingest.batch_writer import EntryBatch, raw_batch_row  # noqa: E402
from app.ingest.handler import entry_rows, write_entries  # noqa: E402
from app.streams import Frame, decode_entry, encode_entry  # noqa: E402
from app.streams.drain import Entry  # noqa: E402

PYTHON = sys.executable
TARGET_RATIO = 0.70  # our path vs bare COPY (DESIGN §4, design-facts §3)
TARGET_LISTENER = 100_000  # frames/s per core
GATHERER = "bench"
STREAM = "kd:bench:book:0"
DAY_NS = 86_400 * 10**9


# -- shared ---------------------------------------------------------------------------------


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def print_profile(profile: cProfile.Profile, top: int = 25) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue())


# -- db ---------------------------------------------------------------------------------------


def delta_frames(n: int, markets: int, seed: int = 7) -> list[bytes]:
    """`orderbook_delta` frames as the simulator sends them (current format), one sid."""
    rng = random.Random(seed)
    tickers = [
        (f"KXSIMA-E{i // 4}-T{i % 4 + 1}", str(uuid.UUID(int=rng.getrandbits(128))))
        for i in range(markets)
    ]
    base_ms = 1_795_533_307_492
    frames = []
    for seq in range(1, n + 1):
        ticker, market_id = rng.choice(tickers)
        ts_ms = base_ms + seq
        stamp = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        size = rng.choice(
            (f"{rng.randint(1, 250)}.00", f"{rng.randint(1, 250)}.{rng.randint(0, 99):02d}")
        )
        frames.append(
            (
                f'{{"type":"orderbook_delta","sid":1,"seq":{seq},"msg":{{"market_ticker":"{ticker}",'
                f'"market_id":"{market_id}","price_dollars":"0.{rng.randint(1, 99):02d}00",'
                f'"delta_fp":"{rng.choice(("", "-"))}{size}","side":"{rng.choice(("yes", "no"))}",'
                f'"ts":"{stamp}","ts_ms":{ts_ms}}}}}'
            ).encode()
        )
    return frames


def make_entries(raws: list[bytes], day: date, entry_frames: int) -> list[Entry]:
    """Stream entries as a drain hands them over (encoded and decoded envelopes)."""
    start_ns = int(datetime(day.year, day.month, day.day, 1, tzinfo=UTC).timestamp()) * 10**9
    conn_id = f"{GATHERER}-ob0-{uuid.uuid4().hex}"
    entries = []
    for first in range(0, len(raws), entry_frames):
        batch = [
            Frame(raw, start_ns + (first + i) * 1000, conn_id, 1, first + i + 1)
            for i, raw in enumerate(raws[first : first + entry_frames])
        ]
        fields = encode_entry(batch)
        fields[b"p"], fields[b"q"] = b"bench-publisher", str(first).encode()
        entries.append(Entry(f"{first}-0", fields, decode_entry(fields), 1))
    return entries


def timed_batches(conn: Any, batches: list[Any], write: Callable[[Any, Any], Any]) -> float:
    started = time.perf_counter()
    for batch in batches:
        write(conn, batch)
        conn.commit()
    return time.perf_counter() - started


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@contextlib.contextmanager
def scratch_database(base_url: str) -> Iterator[str]:
    name = f"kd_bench_ingest_{os.getpid()}"
    url = base_url.rstrip("/") + "/" + name
    upgrade(url)
    try:
        yield url
    finally:
        admin = psycopg2.connect(base_url.rstrip("/") + "/postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def partition_rows(conn: Any, table: str, day: date) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}_p{day:%Y%m%d}")
        return int(cur.fetchone()[0])


def bench_db(args: argparse.Namespace) -> None:
    raws = delta_frames(args.frames, args.markets)
    n = len(raws)
    today = datetime.now(UTC).date()
    rounds = args.rounds
    per_tx = args.entry_frames * args.entries
    print(f"db.frames {n} (avg {sum(map(len, raws)) / n:.0f} B, {args.markets} markets)")
    print(f"db.transaction {args.entries} entries x {args.entry_frames} frames = {per_tx} frames")
    print(f"db.rounds {rounds} (each variant once per round, order rotated; medians reported)")
    print(f"db.load_average_before {load_average()}")

    # Every variant of every round writes into its own fresh daily partitions (same indexes).
    def day_of(round_no: int, variant: int) -> date:
        return today + timedelta(days=1 + 3 * round_no + variant)

    def entries_on(day: date) -> list[Entry]:
        return make_entries(raws, day, args.entry_frames)

    def delta_rows(entries: list[Entry]) -> list[OrderbookDeltaRow]:
        rows = entry_rows(entries, gatherer=GATHERER, stream=STREAM)
        deltas = [row for row in rows if isinstance(row, OrderbookDeltaRow)]
        assert len(deltas) == len(rows) == n, "every frame must give exactly one delta row"
        return deltas

    # Client-side costs alone (no database): the general path, our fused path, raw batches.
    sample = entries_on(today)
    started = time.perf_counter()
    reference = delta_rows(sample)
    general_s = time.perf_counter() - started
    started = time.perf_counter()
    encode_rows("orderbook_deltas", reference)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    for call in chunks(sample, args.entries):
        batch = EntryBatch(call, gatherer=GATHERER, stream=STREAM)
        batch.finish()
        assert not batch.rows, "every frame must take the fast path"
        encode_binary(
            [row for e in call if (row := raw_batch_row(e, gatherer=GATHERER, stream=STREAM))]
        )
    fused_s = time.perf_counter() - started
    print(f"db.client.general_normalize {1e6 * general_s / n:.2f} us/frame (mappers, row objects)")
    print(f"db.client.copy_text_encoding {1e6 * encode_s / n:.2f} us/row (anchor's encoder)")
    print(
        f"db.client.fused_fast_path {1e6 * fused_s / n:.2f} us/frame "
        "(parse + checks + COPY line + raw batch binary encoding)"
    )

    def copy_into(conn: Any, payload: str) -> None:
        with conn.cursor() as cur:
            cur.copy_expert("COPY orderbook_deltas FROM STDIN", io.StringIO(payload))

    def bare_copy(conn: Any, batch: list[OrderbookDeltaRow]) -> None:
        copy_into(conn, encode_rows("orderbook_deltas", batch))

    def ours(conn: Any, batch: list[Entry]) -> None:
        write_entries(conn, batch, gatherer=GATHERER, stream=STREAM)

    seconds: dict[str, list[float]] = {"pre": [], "copy": [], "ours": []}
    replay_s = 0.0
    profile = cProfile.Profile() if args.profile else None
    with scratch_database(args.database_url) as url:
        conn = psycopg2.connect(url)
        try:
            ensure_partitions(conn, days_ahead=3 * rounds + 2)
            conn.commit()
            # warm the connection (temp staging tables, plan cache) on throw-away rows
            warm = make_entries(raws[:1000], today - timedelta(days=1), 500)
            write_entries(conn, warm, gatherer=GATHERER, stream=STREAM)
            write_entries(conn, warm, gatherer=GATHERER, stream=STREAM)
            for round_no in range(rounds):
                pre = [
                    encode_rows("orderbook_deltas", rows)
                    for rows in chunks(delta_rows(entries_on(day_of(round_no, 0))), per_tx)
                ]
                rows_for_copy = chunks(delta_rows(entries_on(day_of(round_no, 1))), per_tx)
                calls = chunks(entries_on(day_of(round_no, 2)), args.entries)
                runs: list[tuple[str, list[Any], Callable[[Any, Any], Any]]] = [
                    ("pre", pre, copy_into),
                    ("copy", rows_for_copy, bare_copy),
                    ("ours", calls, ours),
                ]
                # rotate the order each round so no variant always runs first (checkpoints,
                # autovacuum and cache state then fall on each in turn)
                for name, batches, write in runs[round_no % 3 :] + runs[: round_no % 3]:
                    if profile and name == "ours":
                        profile.enable()
                    seconds[name].append(timed_batches(conn, batches, write))
                    if profile and name == "ours":
                        profile.disable()
                if round_no == 0:
                    replay_s = timed_batches(conn, calls, ours)  # every row already stored
                for variant in range(3):
                    count = partition_rows(conn, "orderbook_deltas", day_of(round_no, variant))
                    assert count == n, f"round {round_no}: {count} delta rows, expected {n}"
                day = day_of(round_no, 2)
                with conn.cursor() as cur:
                    cur.execute(f"SELECT sum(frame_count) FROM raw_batches_p{day:%Y%m%d}")
                    assert cur.fetchone()[0] == n, "every frame must be in raw_batches once"
                conn.rollback()
        finally:
            conn.close()

    rate = {run: n / statistics.median(times) for run, times in seconds.items()}
    spread = {run: " / ".join(f"{n / t:,.0f}" for t in times) for run, times in seconds.items()}

    def verdict(ratio: float) -> str:
        return "met" if ratio >= TARGET_RATIO else "MISSED"

    print(
        f"db.bare_copy_deltas_preencoded {rate['pre']:,.0f} rows/s "
        f"(server side only; rounds {spread['pre']})"
    )
    print(
        f"db.bare_copy_deltas {rate['copy']:,.0f} rows/s "
        f"(incl. our COPY text encoding; rounds {spread['copy']})"
    )
    print(
        f"db.ours_write_entries {rate['ours']:,.0f} frames/s = delta rows/s "
        f"(normalize + raw_batches + orderbook_deltas + commit; rounds {spread['ours']})"
    )
    print(
        f"db.ours_replay {n / replay_s:,.0f} frames/s (the same entries again: every COPY "
        "clashes, staging + insert-on-conflict inserts nothing)"
    )
    anchor = max(rate["pre"], rate["copy"])
    for name, value in (
        ("ours_vs_fastest_bare_copy", rate["ours"] / anchor),
        ("ours_vs_bare_copy_incl_encoding", rate["ours"] / rate["copy"]),
    ):
        print(f"db.ratio_{name} {value:.0%} (target {TARGET_RATIO:.0%}: {verdict(value)})")
    print(f"db.load_average_after {load_average()}")
    if profile is not None:
        print_profile(profile)


# -- listener -------------------------------------------------------------------------------


def start_simulator(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [PYTHON, "-m", "app", "--log-level", "WARNING", "sim", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("simulator listening on "):
        process.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    port = urlsplit(line.split()[-1]).port
    assert port is not None
    return process, port


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def run_listener(args: argparse.Namespace, port: int, sim_pid: int, journal: Path) -> None:
    from app.config import KalshiSettings, ListenerSettings, Settings, StreamSettings
    from app.listener import Listener

    gatherer = f"bl{uuid.uuid4().hex[:10]}"
    settings = Settings(
        gatherer=gatherer,
        redis_url=args.redis_url,
        kalshi=KalshiSettings(
            ws_url=f"ws://127.0.0.1:{port}/trade-api/ws/v2",
            rest_url=f"http://127.0.0.1:{port}/trade-api/v2",
        ),
        streams=StreamSettings(journal_dir=journal),
        metrics={"enabled": False},
    )
    config = ListenerSettings(
        markets_per_connection=args.markets_per_connection,
        global_connections=() if args.no_globals else ListenerSettings().global_connections,
        stats_log_interval_s=3600,
    )
    listener = Listener(settings, config, signer=None)
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    client = redis.Redis.from_url(args.redis_url)
    try:
        deadline = time.monotonic() + 60
        while True:
            conns = list(listener.stats.connections.values())
            books = sum(c.subscribed_markets for c in conns if c.role == "orderbook")
            if conns and books >= args.markets and all(c.connected for c in conns):
                break
            if task.done():
                task.result()
                raise SystemExit("listener ended before subscribing")
            if time.monotonic() > deadline:
                raise SystemExit(f"not subscribed after 60 s: {listener.snapshot_stats()}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.warmup)
        profile = cProfile.Profile() if args.profile else None
        frames0 = listener.stats.frames
        published0 = listener.publisher.stats.frames_published
        cpu0, sim0, redis0 = own_cpu_seconds(), cpu_seconds_of(sim_pid), redis_cpu_seconds(client)
        t0 = time.perf_counter()
        if profile:
            profile.enable()
        await asyncio.sleep(args.seconds)
        if profile:
            profile.disable()
        wall = time.perf_counter() - t0
        frames = listener.stats.frames - frames0
        published = listener.publisher.stats.frames_published - published0
        cpu = own_cpu_seconds() - cpu0
        sim_cpu = cpu_seconds_of(sim_pid) - sim0
        redis_cpu = redis_cpu_seconds(client) - redis0
        stats = listener.snapshot_stats()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
        keys = list(client.scan_iter(match=f"kd:{gatherer}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()

    per_core = frames / cpu if cpu else float("nan")
    print(
        f"listener.connections {len(stats['connections'])} ({stats['shards']} orderbook + "
        f"{len(config.global_connections)} global), markets {stats['markets']}"
    )
    print(f"listener.seconds {wall:.2f}")
    print(
        f"listener.frames {frames} (published to Redis in the window: {published}; "
        f"spilled total {stats['publisher']['frames_spilled']})"
    )
    print(f"listener.frames_per_s_wall {frames / wall:,.0f}")
    print(f"listener.cpu_s {cpu:.2f} ({cpu / wall:.0%} of one core)")
    print(
        f"listener.frames_per_cpu_s {per_core:,.0f} (target {TARGET_LISTENER:,}: "
        f"{'met' if per_core >= TARGET_LISTENER else 'MISSED'})"
    )
    print(f"listener.simulator_cpu {sim_cpu / wall:.0%} of one core")
    print(f"listener.redis_cpu {redis_cpu / wall:.0%} of one core")
    print(f"listener.frames_by_type_since_start {dict(stats['frames_by_type'])}")
    print(f"listener.load_average {load_average()}")
    if profile is not None:
        print_profile(profile)


def bench_listener(args: argparse.Namespace) -> None:
    process, port = start_simulator(
        [
            "--markets", str(args.markets), "--rate", str(args.rate), "--seed", "7",
            "--market-lifetime", "100000",
        ]
    )  # fmt: skip
    print(f"listener.simulator --markets {args.markets} --rate {args.rate:.0f} (no truth)")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-listener-") as journal:
            asyncio.run(run_listener(args, port, process.pid, Path(journal)))
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    db = sub.add_parser("db", help="our write path vs bare COPY, rows/s")
    db.add_argument("--database-url", default="postgresql://postgres@localhost:5432")
    db.add_argument("--frames", type=int, default=200_000)
    db.add_argument("--markets", type=int, default=300)
    db.add_argument("--entry-frames", type=int, default=500, help="frames per stream entry")
    db.add_argument("--entries", type=int, default=10, help="entries per transaction (drain_count)")
    db.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    db.add_argument("--profile", action="store_true", help="cProfile our path")
    ls = sub.add_parser("listener", help="listener frames/s per core against the simulator")
    ls.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ls.add_argument("--markets", type=int, default=300)
    ls.add_argument("--markets-per-connection", type=int, default=300)
    ls.add_argument("--rate", type=float, default=200_000.0)
    ls.add_argument("--seconds", type=float, default=10.0)
    ls.add_argument("--warmup", type=float, default=2.0)
    ls.add_argument("--no-globals", action="store_true", help="orderbook connections only")
    ls.add_argument("--profile", action="store_true", help="cProfile the listener")
    args = parser.parse_args()
    if args.part == "db":
        bench_db(args)
    else:
        bench_listener(args)


if __name__ == "__main__":
    main()

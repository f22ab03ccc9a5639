"""Benchmark of the deduplicator (issue 10): rows per second merged into production.

Usage:
    .venv/bin/python bench/dedup.py [--trades 100000] [--tickers 100000] [--overlap 0.9]
        [--book-deltas 0] [--batch-rows 50000]
        [--admin-url postgresql://postgres@localhost:5432/postgres]

Creates three gatherer databases and a production database (`kd_bench_dedup_*_<pid>`, migrated,
dropped at the end) on the given server. Each gatherer gets `--trades` trades and `--tickers`
ticker rows written with `app.db.copy.write_rows` (the ingest COPY path), of which `--overlap`
are the same exchange messages on all three (each gatherer also has its own share), so
production ends with fewer rows than were read, as with three healthy gatherers. Then one
`run_dedup` merges everything, timed, and prints rows read per second (the figure the 100,000
rows/s target is about: every gatherer's copy is work), rows inserted per second, and the
duplicate ratio. A second run (nothing new) shows the cost of an idle run.

`--book-deltas N` also gives each gatherer the same order book stream (a snapshot of each of
200 markets, then N deltas on one subscription, 1 ms apart): the deduplicator plans every
market's chain (all three whole: it keeps the first) and copies one gatherer's snapshots and
deltas into production; the book rows copied per second are printed on their own line.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

import psycopg2

from app.config import DedupSettings, GathererDatabase
from app.db.copy import write_rows
from app.db.migrations import upgrade
from app.db.rows import OrderbookDeltaRow, OrderbookSnapshotRow, TickerRow, TradeRow
from app.dedup import run_dedup

START = datetime(2026, 9, 21, 12, tzinfo=UTC)
MARKETS = [f"KXB-26SEP21-T{i}" for i in range(200)]


def trades(gatherer: str, shared: range, own: range) -> list[TradeRow]:
    out = []
    for pos, i in enumerate([*shared, *own]):
        at = START + timedelta(milliseconds=i * 10)
        out.append(
            TradeRow(
                trade_id=f"t-{i:010d}" if i in shared else f"t-{gatherer}-{i:010d}",
                exchange_ts=at.replace(microsecond=0),
                exchange_ms=None,
                market_ticker=MARKETS[i % len(MARKETS)],
                yes_price=420_000,
                no_price=580_000,
                size=300,
                taker_side="yes",
                taker_book_side="ask",
                is_block_trade=False,
                source="ws",
                gatherer=gatherer,
                connection_id=f"{gatherer}-trade-1",
                sid=1,
                seq=None,
                received_ns=int(at.timestamp() * 1e9) + pos,
                received_at=at,
                batch_pos=pos % 500,
            )
        )
    return out


def tickers(gatherer: str, shared: range, own: range) -> list[TickerRow]:
    out = []
    for pos, i in enumerate([*shared, *own]):
        at = START + timedelta(milliseconds=i * 7)
        out.append(
            TickerRow(
                gatherer=gatherer,
                connection_id=f"{gatherer}-ticker-1",
                sid=2,
                received_ns=int(at.timestamp() * 1e9) + pos,
                received_at=at,
                batch_pos=pos % 500,
                market_ticker=MARKETS[i % len(MARKETS)],
                market_id=None,
                exchange_ts=at,
                price=400_000 + (i % 100) * 1000 if i in shared else 1000 + pos,
                yes_bid=400_000,
                yes_ask=440_000,
                yes_bid_size=None,
                yes_ask_size=None,
                last_trade_size=None,
                volume=i,
                open_interest=1000,
                dollar_volume=None,
                dollar_open_interest=None,
                clock=None,
            )
        )
    return out


def books(gatherer: str, offset_us: int, deltas: int) -> list[tuple[object, ...]]:
    """One subscription: a snapshot of every market, then `deltas` deltas (same for every
    gatherer but its receive times, `offset_us` later)."""
    conn_id = f"{gatherer}-ob-1"
    out: list[tuple[object, ...]] = []
    for pos, market in enumerate(MARKETS):
        at = START + timedelta(microseconds=offset_us + pos)
        out.append(
            OrderbookSnapshotRow(
                gatherer, "ws", market, None, conn_id, 1, pos + 1,
                int(at.timestamp() * 1e9), at, pos % 500, None,
                (400_000, 420_000), (1000, 2000), (500_000,), (3000,), 420_000, 500_000,
            )
        )  # fmt: skip
    for i in range(deltas):
        at = START + timedelta(milliseconds=1 + i, microseconds=offset_us)
        delta = 100 if (i // len(MARKETS)) % 2 == 0 else -100  # add, then take back
        out.append(
            OrderbookDeltaRow(
                gatherer, MARKETS[i % len(MARKETS)], None, conn_id, 1, len(MARKETS) + i + 1,
                int(at.timestamp() * 1e9), at, i % 500, None, "yes", 400_000, delta,
            )
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--tickers", type=int, default=100_000)
    parser.add_argument("--overlap", type=float, default=0.9)
    parser.add_argument("--book-deltas", type=int, default=0)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--admin-url", default="postgresql://postgres@localhost:5432/postgres")
    args = parser.parse_args()
    base = args.admin_url.rsplit("/", 1)[0]
    names = {r: f"kd_bench_dedup_{r}_{os.getpid()}" for r in ("g1", "g2", "g3", "p")}
    admin = psycopg2.connect(args.admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        for name in names.values():
            cur.execute(f'CREATE DATABASE "{name}"')
    try:
        urls = {r: f"{base}/{n}" for r, n in names.items()}
        for url in urls.values():
            upgrade(url, create=False)
        for index, g in enumerate(("g1", "g2", "g3")):
            conn = psycopg2.connect(urls[g])
            for count, build in ((args.trades, trades), (args.tickers, tickers)):
                shared = int(count * args.overlap)
                own = range(10**8 * (index + 1), 10**8 * (index + 1) + count - shared)
                rows = build(g, range(shared), own)
                for start in range(0, len(rows), 50_000):
                    write_rows(conn, rows[start : start + 50_000])
                    conn.commit()
            if args.book_deltas:
                stream = books(g, index * 100, args.book_deltas)
                for start in range(0, len(stream), 50_000):
                    write_rows(conn, stream[start : start + 50_000])  # type: ignore[arg-type]
                    conn.commit()
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO connection_sessions (gatherer, connection_id, role, "
                        "opened_at) VALUES (%s, %s, 'orderbook', %s)",
                        (g, f"{g}-ob-1", START),
                    )
                conn.commit()
            conn.close()
        settings = DedupSettings(
            production_url=urls["p"],
            gatherers=tuple(
                GathererDatabase(name=g, database_url=urls[g]) for g in ("g1", "g2", "g3")
            ),
            batch_rows=args.batch_rows,
            max_run_s=3600,
            book_lateness_s=0,
        )
        started = time.perf_counter()
        report = run_dedup(settings, urls["p"])
        took = time.perf_counter() - started
        book_tables = ("orderbook_snapshots", "orderbook_deltas")
        book_rows = sum(report.read[t] for t in book_tables)
        read = sum(v for t, v in report.read.items() if t not in book_tables)
        inserted = sum(v for t, v in report.inserted.items() if t not in book_tables)
        print(
            f"gatherers: 3 x ({args.trades} trades + {args.tickers} tickers), "
            f"overlap {args.overlap}"
        )
        print(f"merged in {took:.2f} s, {report.batches} batches of <= {args.batch_rows} rows")
        print(f"rows read:     {read:>9}  {read / took:>10,.0f} rows/s  (target 100,000)")
        print(f"rows inserted: {inserted:>9}  {inserted / took:>10,.0f} rows/s")
        if read:
            print(f"duplicate ratio: {1 - inserted / read:.3f}")
        if book_rows:
            print(
                f"book rows copied: {book_rows:>9} in {report.book_windows} window(s), "
                f"{report.book_gaps} gaps (of {took:.2f} s in all)"
            )
        for table in sorted(report.read):
            print(
                f"  {table:<10} read {report.read[table]:>9} inserted {report.inserted[table]:>9}"
            )
        started = time.perf_counter()
        idle = run_dedup(settings, urls["p"])
        print(
            f"idle run: {time.perf_counter() - started:.3f} s, {sum(idle.read.values())} rows read"
        )
    finally:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()

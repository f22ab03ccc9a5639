"""Benchmarks of the data path's transport (run by hand; the lead records the figures).

    .venv/bin/python bench/streams.py [--redis-url redis://localhost:6379/14] [--frames 200000]

## Streams
1. envelope: encode + decode cost per ~200-byte frame, in memory.
2. publish: frames/s through `StreamPublisher.add` -> batches of 500 -> XADD script, across
   8 book partitions + trade + ticker (weights like live traffic), until Redis holds them all.
3. drain: frames/s through `drain()` with a no-op handler (XREADGROUP + decode + XACK), one
   consumer, count=10 entries per call.
Keys live under a throw-away gatherer prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

import redis

from app.streams import (
    Frame,
    StreamNames,
    StreamPublisher,
    StreamSettings,
    decode_entry,
    drain,
    encode_entry,
    open_redis,
)

TICKERS = [f"KXBTCD-26JAN{i:04d}-T{100000 + i * 250}" for i in range(2000)]


def sample_frames(n: int, seed: int = 1) -> list[tuple[str, str | None, bytes]]:
    """(type, ticker, raw) triples, about 200 bytes each: 90% book deltas, 5% trades, 5% tickers."""
    rng = random.Random(seed)
    out = []
    for seq in range(n):
        ticker = rng.choice(TICKERS)
        roll = rng.random()
        if roll < 0.9:
            kind = "orderbook_delta"
            raw = (
                f'{{"type":"orderbook_delta","sid":2,"seq":{seq},"msg":{{"market_ticker":'
                f'"{ticker}","market_id":"9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1","price_dollars":'
                f'"0.{rng.randint(1000, 9999)}","delta_fp":"-{rng.randint(1, 500)}.00",'
                f'"side":"yes","ts_ms":{1769149841000 + seq}}}}}'
            )
        elif roll < 0.95:
            kind = "trade"
            raw = (
                f'{{"type":"trade","sid":11,"seq":{seq},"msg":{{"trade_id":"{uuid.UUID(int=seq)}",'
                f'"market_ticker":"{ticker}","yes_price_dollars":"0.3600","no_price_dollars":'
                f'"0.6400","count_fp":"136.00","taker_side":"no","ts_ms":{1769149841000 + seq}}}}}'
            )
        else:
            kind = "ticker"
            raw = (
                f'{{"type":"ticker","sid":12,"msg":{{"market_ticker":"{ticker}","price_dollars":'
                f'"0.4800","yes_bid_dollars":"0.4500","yes_ask_dollars":"0.5300","volume_fp":'
                f'"33896.00","open_interest_fp":"20422.00","ts_ms":{1769149841000 + seq}}}}}'
            )
        out.append((kind, ticker, raw.encode()))
    return out


def bench_envelope(samples: list[tuple[str, str | None, bytes]]) -> None:
    frames = [
        Frame(raw, time.time_ns(), "g1-book-0-1a2b", 2, i) for i, (_, _, raw) in enumerate(samples)
    ]
    batches = [frames[i : i + 500] for i in range(0, len(frames), 500)]
    t0 = time.perf_counter()
    entries = [encode_entry(batch) for batch in batches]
    t1 = time.perf_counter()
    for entry in entries:
        decode_entry(entry)
    t2 = time.perf_counter()
    n = len(frames)
    size = sum(len(e[b"d"]) for e in entries) / n
    print(
        f"envelope: encode {1e6 * (t1 - t0) / n:.2f} us/frame ({n / (t1 - t0):,.0f} frames/s), "
        f"decode {1e6 * (t2 - t1) / n:.2f} us/frame ({n / (t2 - t1):,.0f} frames/s), "
        f"{size:.0f} B/frame encoded (raw avg {sum(len(s[2]) for s in samples) / n:.0f} B)"
    )


async def bench_publish(
    url: str, names: StreamNames, samples: list[tuple[str, str | None, bytes]]
) -> None:
    settings = StreamSettings(book_partitions=names.partitions)
    with tempfile.TemporaryDirectory() as journal:
        pub = StreamPublisher(open_redis(url, settings), names, Path(journal), settings)
        await pub.start()
        t0 = time.perf_counter()
        for i, (kind, ticker, raw) in enumerate(samples):
            pub.add(names.route(kind, ticker), Frame(raw, time.time_ns(), "g1-book-0", 2, i))
            if i % 200 == 0:
                await asyncio.sleep(0)  # a listener awaits its socket between frames
        t_added = time.perf_counter()
        assert await pub.flush(60), "Redis did not take everything"
        t1 = time.perf_counter()
        stats = pub.stats
        await pub.close()
    n = len(samples)
    print(
        f"publish: {n:,} frames in {t1 - t0:.2f} s = {n / (t1 - t0):,.0f} frames/s end to end "
        f"(add loop alone {n / (t_added - t0):,.0f} frames/s); {stats.batches_published} entries, "
        f"spilled {stats.frames_spilled}"
    )


def bench_drain(client: redis.Redis, names: StreamNames) -> None:
    total_frames = 0
    total_entries = 0
    t0 = time.perf_counter()
    for stream in names.data_streams:
        while True:
            result = drain(client, stream, "writers", "bench:1", lambda entries: None, budget_s=30)
            total_frames += result.frames
            total_entries += result.handled
            if result.exhausted:
                break
    t1 = time.perf_counter()
    print(
        f"drain: {total_frames:,} frames / {total_entries:,} entries in {t1 - t0:.2f} s = "
        f"{total_frames / (t1 - t0):,.0f} frames/s (no-op handler, count=10, decode + XACK)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://localhost:6379/14")
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()
    samples = sample_frames(args.frames)
    names = StreamNames(f"bench{uuid.uuid4().hex[:8]}", 8)
    client = redis.Redis.from_url(args.redis_url)
    print(f"## Streams ({args.frames:,} frames, ~200 B each, Redis {args.redis_url})")
    try:
        bench_envelope(samples)
        asyncio.run(bench_publish(args.redis_url, names, samples))
        bench_drain(client, names)
    finally:
        keys = list(client.scan_iter(match=f"{names.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()

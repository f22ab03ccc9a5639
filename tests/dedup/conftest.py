"""Three migrated gatherer databases and a production database, and frames to fill them through
the real ingest path (`write_entries`), for the deduplicator tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest

from app.config import DedupSettings, GathererDatabase
from app.db.migrations import upgrade
from app.dedup import gatherer_horizon
from app.ingest import write_entries
from app.streams import Entry, Frame, encode_entry

BASE_MS = 1_790_000_000_000  # 2026-09-21


@dataclass
class Fleet:
    gatherers: dict[str, str]  # name -> database URL
    production: str

    def settings(self, **overrides: Any) -> DedupSettings:
        values: dict[str, Any] = {
            "production_url": self.production,
            "gatherers": tuple(
                GathererDatabase(name=n, database_url=u) for n, u in self.gatherers.items()
            ),
        }
        return DedupSettings(**{**values, **overrides})


@pytest.fixture
def fleet(postgres_admin_url: str) -> Iterator[Fleet]:
    admin = psycopg2.connect(postgres_admin_url)
    admin.autocommit = True
    base = postgres_admin_url.rsplit("/", 1)[0]
    names = {role: f"kd_test_dd_{role}_{uuid.uuid4().hex[:8]}" for role in ("g1", "g2", "g3", "p")}
    with admin.cursor() as cur:
        for name in names.values():
            cur.execute(f'CREATE DATABASE "{name}"')
    urls = {role: f"{base}/{name}" for role, name in names.items()}
    try:
        for url in urls.values():
            upgrade(url, create=False)
        yield Fleet({g: urls[g] for g in ("g1", "g2", "g3")}, urls["p"])
    finally:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def trade(i: int) -> str:
    return json.dumps(
        {"type": "trade", "sid": 1, "msg": {
            "trade_id": f"00000000-0000-4000-8000-{i:012d}", "market_ticker": "KXA-26DEC01-T1",
            "yes_price_dollars": "0.4200", "no_price_dollars": "0.5800", "count_fp": "3.00",
            "taker_side": "yes", "ts": (BASE_MS + i * 1000) // 1000, "ts_ms": BASE_MS + i * 1000,
        }}
    )  # fmt: skip


def ticker(i: int) -> str:
    """Ticker message `i`; equal `i` means equal content (the same exchange message)."""
    return json.dumps(
        {"type": "ticker", "sid": 2, "msg": {
            "market_ticker": "KXA-26DEC01-T1", "price_dollars": f"0.{10 + i % 80:02d}00",
            "yes_bid_dollars": "0.4000", "yes_ask_dollars": "0.4400", "volume_fp": f"{i}.00",
            "open_interest_fp": "10.00", "ts": (BASE_MS + i * 7) // 1000, "ts_ms": BASE_MS + i * 7,
        }}
    )  # fmt: skip


def lifecycle(i: int) -> str:
    return json.dumps(
        {"type": "market_lifecycle_v2", "sid": 3, "msg": {
            "market_ticker": f"KXL-26DEC01-T{i}", "event_type": "determined", "result": "yes",
            "determination_ts": BASE_MS // 1000 + i, "settlement_value": "1.0000",
        }}
    )  # fmt: skip


def fee_update(i: int) -> str:
    """An event-level lifecycle message: it names no market."""
    return json.dumps(
        {"type": "event_fee_update", "sid": 3, "msg": {
            "event_ticker": f"KXE-26DEC0{i}", "fee_type_override": "flat",
            "fee_multiplier_override": 0.5,
        }}
    )  # fmt: skip


_clock = [0]


def store(url: str, gatherer: str, texts: list[str], *, conn: Any = None) -> dict[str, int]:
    """Write `texts` as one stream entry of `gatherer` through the real ingest path (commits,
    unless `conn`, an open connection, is given: then the caller commits)."""
    frames = []
    for text in texts:
        _clock[0] += 1
        received = BASE_MS * 1_000_000 + 10_000_000_000 + _clock[0] * 1000
        frames.append(Frame(text.encode(), received, f"{gatherer}-conn-1", None, None))
    entry = Entry(f"{_clock[0]}-0", encode_entry(frames), frames, 1)
    own = conn is None
    connection = psycopg2.connect(url) if own else conn
    try:
        return write_entries(connection, [entry], gatherer=gatherer, stream=f"kd:{gatherer}:x")
    finally:
        if own:
            connection.close()


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        conn.close()


def settled(fleet: Fleet, timeout: float = 60.0) -> Fleet:
    """Wait until every gatherer's horizon has passed all its stored rows, so that a run
    merges everything (a transaction still open elsewhere on the server holds it back)."""
    deadline = time.monotonic() + timeout
    for url in fleet.gatherers.values():
        conn = psycopg2.connect(url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT max(ingest_xid::text::numeric) FROM (SELECT ingest_xid FROM trades "
                    "UNION ALL SELECT ingest_xid FROM tickers "
                    "UNION ALL SELECT ingest_xid FROM lifecycle_events) x"
                )
                (newest,) = cur.fetchone()
                while newest is not None and gatherer_horizon(conn) <= newest:
                    assert time.monotonic() < deadline, "a transaction stays open on the server"
                    time.sleep(0.05)
        finally:
            conn.close()
    return fleet

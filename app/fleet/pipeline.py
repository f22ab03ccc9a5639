"""What the capture pipeline is doing right now, read from Redis and the database.

`up`'s status line reads this once a second: frames stored per second (the drains' counter of
frames newly stored in `raw_batches`, a Redis key), stream lag and pending entries across the
gatherer's streams, rows written per table, sequence gaps and dead letters. Everything is
read-only and cheap: stream stats and the counter are a few Redis commands, row counts come
from `pg_stat_user_tables` (cumulative insert counters PostgreSQL keeps anyway, summed over
partitions), gaps and dead letters from small indexed tables. It never raises on a transient
failure: a service that does not answer shows as `?`.

With several gatherers (`up --gatherers N`) the live line holds one short segment per gatherer
and production's rows; the final report counts the merged tables exactly, in production and in
each gatherer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg2
import redis

from app.streams import StreamNames, stream_stats

log = logging.getLogger("kalshi_data.pipeline")

COUNTED_TABLES = (
    "orderbook_snapshots",
    "orderbook_deltas",
    "trades",
    "tickers",
    "lifecycle_events",
    "dead_letters",
)

_INSERTS_SQL = """
SELECT parent.relname, COALESCE(SUM(stat.n_tup_ins - stat.n_tup_del), 0)::bigint
FROM pg_class parent
JOIN pg_inherits inh ON inh.inhparent = parent.oid
JOIN pg_stat_user_tables stat ON stat.relid = inh.inhrelid
WHERE parent.relname = ANY(%s)
GROUP BY parent.relname
"""
_GAPS_SQL = "SELECT count(*), count(recovered_at) FROM sequence_gaps WHERE gatherer = %s"


@dataclass
class PipelineSnapshot:
    """One reading of the pipeline; None means "could not be read this time"."""

    rows: dict[str, int] = field(default_factory=dict)
    frames_stored: int | None = None
    stream_length: int | None = None
    lag: int | None = None
    pending: int | None = None
    oldest_pending_ms: int | None = None
    gaps: int | None = None
    gaps_recovered: int | None = None


class PipelineReader:
    """Keeps one Redis client and one database connection open for periodic readings.

    Without stream names (a production database) only the database is read.
    """

    def __init__(self, redis_url: str, database_url: str, names: StreamNames | None, gatherer: str):
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self._database_url = database_url
        self._db: psycopg2.extensions.connection | None = None
        self._names = names
        self._gatherer = gatherer

    def read(self) -> PipelineSnapshot:
        snapshot = PipelineSnapshot()
        self._read_streams(snapshot)
        self._read_database(snapshot)
        return snapshot

    def _read_streams(self, snapshot: PipelineSnapshot) -> None:
        if self._names is None:
            return
        try:
            stats = [stream_stats(self._redis, name) for name in self._names.all_streams]
            stored = self._redis.get(self._names.frames_stored_key)
        except redis.RedisError as exc:
            log.debug("pipeline stream stats unavailable: %s", exc)
            return
        snapshot.frames_stored = int(stored) if stored is not None else 0
        snapshot.stream_length = sum(s.length for s in stats)
        groups = [g for s in stats for g in s.groups]
        snapshot.pending = sum(g.pending for g in groups)
        lags = [g.lag for g in groups]
        snapshot.lag = None if any(lag is None for lag in lags) else sum(lag or 0 for lag in lags)
        ages = [g.oldest_pending_age_ms for g in groups if g.oldest_pending_age_ms is not None]
        snapshot.oldest_pending_ms = max(ages) if ages else 0

    def _read_database(self, snapshot: PipelineSnapshot) -> None:
        try:
            if self._db is None or self._db.closed:
                self._db = psycopg2.connect(self._database_url, connect_timeout=2)
                self._db.autocommit = True
            with self._db.cursor() as cur:
                cur.execute(_INSERTS_SQL, (list(COUNTED_TABLES),))
                snapshot.rows = {name: int(count) for name, count in cur.fetchall()}
                cur.execute(_GAPS_SQL, (self._gatherer,))
                gaps, recovered = cur.fetchone() or (0, 0)
                snapshot.gaps, snapshot.gaps_recovered = int(gaps), int(recovered)
        except psycopg2.Error as exc:
            log.debug("pipeline database stats unavailable: %s", exc)
            if self._db is not None:
                self._db.close()
            self._db = None

    def close(self) -> None:
        self._redis.close()
        if self._db is not None:
            self._db.close()


def count_rows(database_url: str, tables: Iterable[str]) -> dict[str, int | None]:
    """Exact row counts (one `count(*)` per table) for a final report; None when unreadable."""
    counts: dict[str, int | None] = dict.fromkeys(tables)
    try:
        with contextlib.closing(psycopg2.connect(database_url, connect_timeout=5)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for table in counts:
                    cur.execute(f'SELECT count(*) FROM "{table}"')
                    row = cur.fetchone()
                    counts[table] = int(row[0]) if row else None
    except psycopg2.Error as exc:
        log.debug("row counts unavailable: %s", exc)  # the URL may hold a password
    return counts


def render_counts(counts: dict[str, int | None]) -> str:
    """`trades 12 tickers 40 ...`, `?` for a count that could not be read."""
    return " ".join(f"{table} {_show(count)}" for table, count in counts.items())


def _show(value: int | None) -> str:
    return "?" if value is None else str(value)


class PipelineStatusLine:
    """Renders successive readings as one line with rates (frames stored per second)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._last_frames: int | None = None
        self._last_time: float | None = None

    def _rate(self, frames: int | None, now: float) -> str:
        rate = "?"
        if frames is not None and self._last_frames is not None and self._last_time is not None:
            rate = f"{(frames - self._last_frames) / max(now - self._last_time, 1e-6):.0f}"
        if frames is not None:
            self._last_frames, self._last_time = frames, now
        return rate

    def render(self, snapshot: PipelineSnapshot, now: float) -> str:
        frames = snapshot.frames_stored
        rate = self._rate(frames, now)
        rows = snapshot.rows
        book = (rows.get("orderbook_snapshots") or 0) + (rows.get("orderbook_deltas") or 0)
        return (
            f"{self.label} | {rate:>6} frames/s stored | lag {_show(snapshot.lag)}"
            f" pending {_show(snapshot.pending)} | rows: frames {_show(frames)} book {book}"
            f" trades {_show(rows.get('trades'))} tickers {_show(rows.get('tickers'))}"
            f" lifecycle {_show(rows.get('lifecycle_events'))}"
            f" | gaps {_show(snapshot.gaps)} (recovered {_show(snapshot.gaps_recovered)})"
            f" | dead letters {_show(rows.get('dead_letters'))}"
        )

    def render_short(self, snapshot: PipelineSnapshot, now: float) -> str:
        """One gatherer's segment of the fleet line: the label, rate, lag and trades only."""
        rate = self._rate(snapshot.frames_stored, now)
        return (
            f"{self.label} {rate} f/s lag {_show(snapshot.lag)}"
            f" trades {_show(snapshot.rows.get('trades'))}"
        )


class FleetStatusLine:
    """`up --gatherers N`'s live line: a short segment per gatherer, then production's trades."""

    def __init__(self, label: str, gatherers: Iterable[str]) -> None:
        self.label = label
        self.lines = {name: PipelineStatusLine(name) for name in gatherers}

    def render(
        self, snapshots: dict[str, PipelineSnapshot], production: PipelineSnapshot, now: float
    ) -> str:
        segments = [line.render_short(snapshots[name], now) for name, line in self.lines.items()]
        trades = _show(production.rows.get("trades"))
        return " | ".join([self.label, *segments, f"production trades {trades}"])


def render_member_summary(
    name: str, counts: dict[str, int | None], snapshot: PipelineSnapshot
) -> str:
    """One gatherer's line in a fleet's final report: exact rows of the tables production
    merges (comparable with production's), then the rest of what the live line shows."""
    rows = snapshot.rows
    book = (rows.get("orderbook_snapshots") or 0) + (rows.get("orderbook_deltas") or 0)
    return (
        f"{name}: {render_counts(counts)} | lag {_show(snapshot.lag)}"
        f" pending {_show(snapshot.pending)} | frames {_show(snapshot.frames_stored)} book {book}"
        f" | gaps {_show(snapshot.gaps)} (recovered {_show(snapshot.gaps_recovered)})"
        f" | dead letters {_show(rows.get('dead_letters'))}"
    )

"""The listener process: the connection pool, the shard map, the registry follower, shutdown.

`Listener(settings, listener_settings).run(stop)` runs until `stop` is set (SIGTERM/SIGINT in
the CLI), then stops reading, closes every socket (each session's close goes to the control
stream), flushes the publisher (journaling what Redis does not take) and returns. A journal
that is full is fatal (docs/streams.md): the listener stops reading and `run` raises
`JournalFull`, so the process exits non-zero and the other gatherers cover the gap.

Markets come from the registry change feed (`ChangeFeed.snapshot()` then `read()`); while the
registry set is empty (no sync yet) they come from REST `GET /markets?status=open` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import redis

from app.config import ListenerSettings, Settings
from app.kalshi.auth import Signer, signer_from_settings
from app.kalshi.backoff import Backoff
from app.kalshi.errors import KalshiError
from app.kalshi.rest import KalshiRest
from app.listener.connection import ConnectionManager
from app.listener.control import HOLE_CLOSED, HOLE_OPENED, control_frame, control_stream
from app.listener.heartbeat import (
    RUNNING,
    STOPPED,
    decode_heartbeat,
    encode_heartbeat,
    heartbeat_key,
    successor_records,
)
from app.listener.holes import MarketBirths
from app.listener.metrics import ListenerMetrics, start_listener_metrics
from app.listener.shards import ShardMap
from app.listener.stats import ListenerStats
from app.logs import log_event
from app.metrics import MetricsServer
from app.registry.feed import ChangeFeed, Snapshot
from app.streams import JournalFull, StreamNames, StreamPublisher, open_redis

log = logging.getLogger("kalshi_data.listener")

MarketSource = Callable[[], Iterable[str]]
METRICS_SYNC_S = 1.0  # cadence of ListenerMetrics.sync (frames, publisher, connection gauges)


def journal_dir(settings: Settings, listener: ListenerSettings) -> Path:
    """This listener's journal directory (one per process: the journal is locked)."""
    return settings.streams.journal_dir / listener.journal_subdir.format(gatherer=settings.gatherer)


class Listener:
    """One listener process's pool of connection managers."""

    def __init__(
        self,
        settings: Settings,
        listener: ListenerSettings | None = None,
        *,
        signer: Signer | str | None = "settings",  # "settings": from settings.kalshi
        publisher_id: str | None = None,
        rest_markets: MarketSource | None = None,
    ) -> None:
        self.settings = settings
        self.config = listener or ListenerSettings()
        # Loaded once here so a bad key fails at start; every connect signs afresh with it.
        self._signer: Signer | None = (
            signer_from_settings(settings.kalshi) if isinstance(signer, str) else signer
        )
        self.url = self.config.ws_url or settings.kalshi.ws_url
        self.names = StreamNames(settings.gatherer, settings.streams.book_partitions)
        self.control_stream = control_stream(settings.gatherer)
        self.stats = ListenerStats()
        self.shards = ShardMap(self.config.markets_per_connection)
        self.managers: dict[str, ConnectionManager] = {}
        self._book_managers: list[ConnectionManager] = []
        self._publisher_id = publisher_id
        self._rest_markets = rest_markets or self._open_markets_from_rest
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_managers = asyncio.Event()
        self._publisher: StreamPublisher | None = None
        self._feed: ChangeFeed | None = None
        self._client: Any = None  # the Redis client of `run` (heartbeat writes)
        self._heartbeat_lock = asyncio.Lock()
        self.registry_version = 0
        self.metrics = ListenerMetrics(settings.gatherer)
        self.metrics_server: MetricsServer | None = None
        self.started_ns = time.time_ns()
        self.births = MarketBirths()  # lifecycle `created` times, for the book holes
        self.heartbeat_key = heartbeat_key(
            settings.gatherer, self.config.journal_subdir.format(gatherer=settings.gatherer)
        )

    # -- public ---------------------------------------------------------------------------

    @property
    def publisher(self) -> StreamPublisher:
        assert self._publisher is not None, "listener not started"
        return self._publisher

    def snapshot_stats(self) -> dict[str, Any]:
        out = self.stats.snapshot()
        out["markets"] = len(self.shards)
        out["shards"] = self.shards.shard_count
        if self._publisher is not None:
            out["publisher"] = vars(self._publisher.stats)
        return out

    def sync_metrics(self) -> None:
        """Push the stats into the Prometheus metrics (every second; once more at exit)."""
        self.metrics.sync(
            self.stats,
            self._publisher.stats if self._publisher is not None else None,
            open_holes=sum(len(m.holes.open_holes) for m in self.managers.values()),
        )

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        client = open_redis(s.redis_url, s.streams)
        self._client = client
        self._publisher = StreamPublisher(
            client,
            self.names,
            journal_dir(s, self.config),
            s.streams,
            publisher_id=self._publisher_id,
            on_journal_loss=self._journal_loss,
        )
        await self._publisher.start()
        self.started_ns = time.time_ns()
        await self._settle_predecessor(client)
        self._feed = ChangeFeed.from_url(s.redis_url, s.gatherer, s.registry)
        log_event(log, "listener_starting", gatherer=s.gatherer, url=self.url)
        # Served (and closed by _shutdown) before any connection, so it shows one that fails.
        self.metrics_server = start_listener_metrics(s.metrics)
        try:
            for channels in self.config.global_connections:
                self._start_manager("+".join(channels), "global", channels)
            snapshot = await self._initial_markets()
            follower = asyncio.create_task(self._follow_registry(snapshot), name="registry")
            reporter = asyncio.create_task(self._report_stats(), name="stats")
            metrics = asyncio.create_task(self._sync_metrics(), name="metrics")
            beats = asyncio.create_task(self._beat(client), name="heartbeat")
            stopper = asyncio.create_task(stop.wait())
            await self._wait_for_stop(stopper)
            follower.cancel()
            reporter.cancel()
            metrics.cancel()
            beats.cancel()
            for task in (follower, reporter, metrics, beats):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finally:
            await self._shutdown(client)

    # -- pool -----------------------------------------------------------------------------

    def _start_manager(self, shard: str, role: str, channels: tuple[str, ...]) -> None:
        manager = ConnectionManager(
            shard=shard,
            role=role,
            channels=channels,
            url=self.url,
            gatherer=self.settings.gatherer,
            signer=self._signer,
            publisher=self.publisher,
            names=self.names,
            control_stream=self.control_stream,
            settings=self.config,
            stats=self.stats,
            started_ns=self.started_ns,
            births=self.births,
            on_session_opened=self._session_opened,
        )
        self.managers[shard] = manager
        if role == "orderbook":
            self._book_managers.append(manager)
        self._tasks[shard] = asyncio.create_task(
            manager.run(self._stop_managers), name=f"listener {shard}"
        )

    def _book_manager(self, index: int) -> ConnectionManager:
        while len(self._book_managers) <= index:
            self._start_manager(f"ob{len(self._book_managers)}", "orderbook", ("orderbook_delta",))
        return self._book_managers[index]

    def apply_changes(self, added: Iterable[str] = (), removed: Iterable[str] = ()) -> None:
        """Registry delta -> shard map -> per-connection add/delete (CM-5, CM-6)."""
        for shard, tickers in self.shards.remove(removed).items():
            self._book_manager(shard).set_markets(remove=tickers)
        for shard, tickers in self.shards.assign(added).items():
            self._book_manager(shard).set_markets(add=tickers)

    def retry_refused(self) -> None:
        """A registry refresh: markets the exchange refused are asked for again now."""
        count = sum(m.retry_refused() for m in self._book_managers)
        if count:
            log_event(log, "listener_refused_retry", markets=count)

    async def _wait_for_stop(self, stopper: asyncio.Task[Any]) -> None:
        while not stopper.done():
            tasks: set[asyncio.Future[Any]] = {stopper, *self._tasks.values()}
            done, _ = await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopper:
                    continue
                shard = next(name for name, t in self._tasks.items() if t is task)
                manager = self.managers[shard]
                error = manager.fatal or (task.exception() if not task.cancelled() else None)
                stopper.cancel()
                if error is not None:
                    log_event(log, "listener_fatal", logging.ERROR, shard=shard, error=repr(error))
                    raise error
                raise RuntimeError(f"connection manager {shard} ended unexpectedly")

    async def _shutdown(self, client: Any) -> None:
        began = time.monotonic()
        log_event(log, "listener_stopping", connections=len(self._tasks))
        self._stop_managers.set()
        if self._tasks:
            await asyncio.wait(self._tasks.values(), timeout=self.config.shutdown_timeout_s)
        hung = [shard for shard, task in self._tasks.items() if not task.done()]
        for shard in hung:
            self._tasks[shard].cancel()
        # Each phase is logged with its time, so a slow stop says which part was slow.
        log_event(
            log,
            "listener_connections_stopped",
            logging.WARNING if hung else logging.INFO,
            elapsed_s=round(time.monotonic() - began, 3),
            cancelled=",".join(hung) or None,
        )
        try:
            if self._publisher is not None:
                delivered = await self._publisher.close(timeout=self.config.shutdown_timeout_s)
                log_event(
                    log,
                    "listener_publisher_closed",
                    delivered=delivered,
                    elapsed_s=round(time.monotonic() - began, 3),
                )
                # Everything read is in Redis or the journal: a clean stop (docs/holes.md).
                await self._write_heartbeat(client, STOPPED if delivered else RUNNING)
        finally:
            await client.aclose()
            if self._feed is not None:
                self._feed.redis.close()
            self.sync_metrics()
            if self.metrics_server is not None:
                self.metrics_server.close()
                self.metrics_server = None
            log_event(log, "listener_stopped", **_flat(self.snapshot_stats()))

    # -- heartbeat and predecessor (docs/holes.md) ----------------------------------------

    def _channels(self) -> list[str]:
        channels = [c for group in self.config.global_connections for c in group]
        return [*channels, "orderbook_delta"]

    async def _settle_predecessor(self, client: Any) -> None:
        """Close what the previous listener of this name left open; record its death."""
        try:
            raw = await client.get(self.heartbeat_key)
        except (redis.RedisError, OSError, TimeoutError) as exc:  # nothing is known
            log_event(log, "listener_heartbeat_unreadable", logging.WARNING, error=str(exc))
            return
        previous = decode_heartbeat(raw)
        records = successor_records(
            previous,
            gatherer=self.settings.gatherer,
            started_ns=self.started_ns,
            lead_ns=round(self.config.hole_lead_s * 1e9),
        )
        for event, fields in records:
            self._publish_control(event, fields)
            self.stats.holes_opened += event == HOLE_OPENED
        if previous is not None:
            log_event(
                log,
                "listener_predecessor",
                logging.WARNING if previous.get("state") != STOPPED else logging.INFO,
                predecessor=previous.get("listener_id"),
                state=previous.get("state"),
                records=len(records),
            )
        await self._write_heartbeat(client, RUNNING)

    def _journal_loss(self, segment: str, from_ns: int, to_ns: int, problem: str) -> None:
        """A damaged journal segment lost what was received in that stretch: one closed
        `journal_loss` hole per channel, every market (docs/holes.md)."""
        lead_ns = round(self.config.hole_lead_s * 1e9)
        for channel in self._channels():
            fields = {
                "gatherer": self.settings.gatherer,
                "hole_id": uuid.uuid4().hex,
                "conn_id": None,
                "channel": channel,
                "market_tickers": None,
                "cause": "journal_loss",
                "from_ns": from_ns - lead_ns,
                "detail": f"journal segment {segment}: {problem}",
            }
            self._publish_control(HOLE_OPENED, fields)
            self._publish_control(HOLE_CLOSED, {**fields, "to_ns": to_ns})
        self.stats.journal_losses += 1
        self.stats.holes_opened += len(self._channels())
        log_event(log, "listener_journal_loss", logging.ERROR, segment=segment, problem=problem)

    def _publish_control(self, event: str, fields: dict[str, Any]) -> None:
        conn_id = fields.get("conn_id") or f"{self.settings.gatherer}-listener"
        self.publisher.add(self.control_stream, control_frame(event, fields, conn_id))

    async def _session_opened(self, conn_id: str) -> None:
        """A new session is in the heartbeat before its `session_opened` record goes out."""
        if self._client is not None:
            await self._write_heartbeat(self._client, RUNNING)

    async def _write_heartbeat(self, client: Any, state: str) -> None:
        # One write at a time: a snapshot taken earlier must never overwrite a newer one.
        async with self._heartbeat_lock:
            await self._write_heartbeat_now(client, state)

    async def _write_heartbeat_now(self, client: Any, state: str) -> None:
        sessions = [m.session_info() for m in self.managers.values()]
        value = encode_heartbeat(
            listener_id=self.publisher.publisher_id,
            state=state,
            started_ns=self.started_ns,
            now_ns=time.time_ns(),
            durable_ns=self.publisher.durable_before_ns(),
            channels=self._channels(),
            sessions=[s for s in sessions if s is not None],
            holes=[h for m in self.managers.values() for h in m.holes.open_holes],
        )
        try:
            await client.set(self.heartbeat_key, value)
        except (redis.RedisError, OSError, TimeoutError) as exc:  # only widens a later hole
            self.stats.heartbeat_errors += 1
            log_event(log, "listener_heartbeat_failed", logging.WARNING, error=str(exc))

    async def _beat(self, client: Any) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            await self._write_heartbeat(client, RUNNING)

    # -- markets --------------------------------------------------------------------------

    async def _initial_markets(self) -> Snapshot | None:
        feed = self._feed
        assert feed is not None
        snapshot: Snapshot | None = None
        try:
            snapshot = await asyncio.to_thread(feed.snapshot)
        except redis.RedisError as exc:
            self.stats.registry_errors += 1
            log_event(log, "listener_registry_unavailable", logging.WARNING, error=str(exc))
        if snapshot is not None and snapshot.tickers:
            self.registry_version = snapshot.version
            self.apply_changes(added=sorted(snapshot.tickers))
            log_event(log, "listener_markets", source="registry", markets=len(snapshot.tickers))
        elif self.config.use_rest_fallback:
            try:
                tickers = await asyncio.to_thread(lambda: sorted(self._rest_markets()))
            except (KalshiError, OSError) as exc:
                log_event(log, "listener_rest_markets_failed", logging.ERROR, error=str(exc))
            else:
                self.apply_changes(added=tickers)
                log_event(log, "listener_markets", source="rest", markets=len(tickers))
        return snapshot

    def _open_markets_from_rest(self) -> list[str]:
        rest = KalshiRest.from_settings(
            self.settings.kalshi,
            rest_url=self.config.rest_url,
            signer=self._signer,
        )
        with rest:
            return [m["ticker"] for m in rest.iter_markets(status="open") if "ticker" in m]

    async def _follow_registry(self, snapshot: Snapshot | None) -> None:
        """Apply change-feed entries as they come; reload the set after a version jump."""
        feed = self._feed
        assert feed is not None
        after = snapshot.stream_id if snapshot is not None else None
        backoff = Backoff(0.5, 30.0)
        failures = 0
        block = self.config.registry_block_ms
        while True:
            try:
                if after is None:
                    fresh = await asyncio.to_thread(feed.snapshot)
                    self._resync(fresh)
                    after = fresh.stream_id
                changes = await asyncio.to_thread(feed.read, after, block_ms=block)
                failures = 0
            except redis.RedisError as exc:
                self.stats.registry_errors += 1
                delay = backoff.delay(min(failures, 10))
                failures += 1
                log_event(log, "listener_registry_error", logging.WARNING, error=str(exc))
                await asyncio.sleep(delay)
                continue
            for change in changes:
                if self.registry_version and change.version != self.registry_version + 1:
                    after = None  # trimmed past us or reset: reload the whole set
                    break
                self.stats.registry_changes += 1
                self.registry_version = change.version
                self.apply_changes(change.added, change.removed)
                after = change.id
            if changes:
                self.retry_refused()

    def _resync(self, snapshot: Snapshot) -> None:
        if not snapshot.tickers and not self.registry_version:
            return  # registry still empty: keep the REST fallback set
        current = self.shards.tickers()
        self.apply_changes(
            added=sorted(snapshot.tickers - current), removed=sorted(current - snapshot.tickers)
        )
        self.registry_version = snapshot.version
        self.retry_refused()
        log_event(log, "listener_registry_resync", version=snapshot.version)

    async def _sync_metrics(self) -> None:
        while True:
            self.sync_metrics()
            await asyncio.sleep(METRICS_SYNC_S)

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_log_interval_s)
            log_event(log, "listener_stats", **_flat(self.snapshot_stats()))


def _flat(stats: dict[str, Any]) -> dict[str, Any]:
    """Top-level numbers only (per-connection detail stays in `snapshot_stats`)."""
    return {k: v for k, v in stats.items() if isinstance(v, int | float | str)}


async def run_listener(
    settings: Settings, listener: ListenerSettings, stop: asyncio.Event
) -> Listener:
    """Run one listener until `stop` is set; returns it (for its stats)."""
    runner = Listener(settings, listener)
    await runner.run(stop)
    return runner


__all__ = ["JournalFull", "Listener", "journal_dir", "run_listener"]

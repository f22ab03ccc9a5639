"""The drain: what one Celery ingest task run does to one stream (DESIGN §3, design-facts §1).

    result = drain(client, stream, "writers", consumer_name(), handler,
                   budget_s=5, count=10, min_idle_ms=60_000)

One run:
1. Make sure the group exists (XGROUP CREATE ... 0 MKSTREAM).
2. Reclaim: XAUTOCLAIM entries idle for at least `min_idle_ms` in any consumer's pending list
   (a worker that died, or a handler that failed), `count` at a time. Ids whose entries no
   longer exist (Redis 7 returns them as a third element and drops them from the PEL) are
   counted as `deleted` and logged as an error: only an unsafe trim can cause that.
3. Then read new entries: XREADGROUP GROUP g consumer COUNT count STREAMS s >.
4. For each batch: entries whose envelope does not decode go to the dead-letter stream; the
   rest are handed to `handler(entries)`, which must write them in ONE database transaction
   and commit; then one XACK acknowledges them. Reclaimed entries already delivered more than
   twice (or more than `max_deliveries` times) are handed over one at a time, so a poison
   entry is isolated and its innocent neighbours get written. The handler may return
   `Handled(rejected={entry id: reason})`: it committed the others without those, which go
   to the dead-letter stream (the handler found them to be at fault themselves).
5. Loop until the stream has nothing new (returns) or `budget_s` is spent.

If the handler raises, nothing of that call is acked; the entries stay pending and a later
drain (any consumer) reclaims them after `min_idle_ms`. An exception that `retryable` accepts
(a tuple of types, default OSError, or a predicate; e.g. the database is unreachable,
read-only or timing out) is not the entries' fault: their delivery counts are put back and
their idle time set to `min_idle_ms` (XCLAIM RETRYCOUNT IDLE), so the next run retries them at
once and no outage, however long, turns good entries into poison. An entry is poison only when
it was delivered more than `max_deliveries` times AND failed again, alone, with an error that
is not retryable: a count inflated by killed workers alone never dead-letters anything.
A crash between the handler's commit and the XACK makes the entry be delivered again, so
handlers MUST be idempotent (ON CONFLICT DO NOTHING on stable keys, DESIGN §4).
This module never interprets frames; the handler does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis

from app.logs import log_event
from app.streams.consumers import ensure_group
from app.streams.deadletters import move_to_dead_letters
from app.streams.envelope import EnvelopeError, Frame, decode_entry
from app.streams.names import dead_stream_for

logger = logging.getLogger("kalshi_data.streams.drain")


class Entry(NamedTuple):
    """One stream entry as handed to a handler."""

    id: str
    fields: dict[bytes, bytes]
    frames: list[Frame]  # decoded envelope (empty when drain(..., decode=False))
    deliveries: int  # times_delivered including this delivery


Handler = Callable[[list[Entry]], Any]
Retryable = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass
class Handled:
    """What a handler may return: it committed every entry but `rejected` (id -> reason),
    which the drain moves to the dead-letter stream (and acknowledges) instead."""

    rejected: dict[str, str] = field(default_factory=dict)


@dataclass
class DrainResult:
    stream: str
    consumer: str
    handled: int = 0  # entries the handler committed and we acked
    frames: int = 0  # frames in those entries
    reclaimed: int = 0  # entries taken over by XAUTOCLAIM
    acked: int = 0  # all XACKs, dead letters included
    dead_lettered: int = 0
    deleted: int = 0  # pending ids whose entries had been trimmed away (data lost upstream)
    failed: int = 0  # entries in the handler call that raised (left pending)
    handler_calls: int = 0
    error: str | None = None  # the handler's exception, if one stopped the run
    fault: BaseException | None = field(default=None, repr=False, compare=False)  # ...itself
    transient: bool = False  # that exception was retryable (not the entries' fault)
    exhausted: bool = False  # stopped because nothing was left (not because of the budget)
    paused_s: float = 0.0  # not run: the gatherer's database backoff had this long to go
    elapsed_s: float = 0.0


def drain(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    handler: Handler,
    budget_s: float = 5.0,
    count: int = 10,
    min_idle_ms: int = 60_000,
    *,
    max_deliveries: int | None = 5,
    dead_stream: str | None = None,
    decode: bool = True,
    retryable: Retryable = (OSError,),
) -> DrainResult:
    """Drain `stream` for up to `budget_s` seconds; see the module docstring."""
    if client.get_connection_kwargs().get("decode_responses"):
        raise ValueError("drain needs a Redis client with decode_responses=False (raw bytes)")
    started = time.monotonic()
    deadline = started + budget_s
    result = DrainResult(stream=stream, consumer=consumer)
    run = _Run(
        client,
        stream,
        group,
        consumer,
        handler,
        result,
        max_deliveries=max_deliveries,
        dead_stream=dead_stream or dead_stream_for(stream),
        decode=decode,
        retryable=retryable,
        min_idle_ms=min_idle_ms,
    )
    ensure_group(client, stream, group)
    cursor: Any = "0-0"
    reclaiming = True
    while time.monotonic() < deadline:
        if reclaiming:
            cursor, claimed = run.reclaim(cursor, count, min_idle_ms)
            reclaiming = _id_text(cursor) != "0-0"
            if not claimed:
                continue
            ok = run.process(claimed)
        else:
            fresh = run.read_new(count)
            if not fresh:
                result.exhausted = True
                break
            ok = run.process(fresh)
        if not ok:
            break
    result.elapsed_s = time.monotonic() - started
    return result


class _Run:
    """State of one drain run (kept out of `drain` to keep each step readable)."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        result: DrainResult,
        *,
        max_deliveries: int | None,
        dead_stream: str,
        decode: bool,
        retryable: Retryable,
        min_idle_ms: int = 0,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.handler = handler
        self.result = result
        self.max_deliveries = max_deliveries
        self.dead_stream = dead_stream
        self.decode = decode
        self.retryable = retryable
        self.min_idle_ms = min_idle_ms

    # -- reading ------------------------------------------------------------------------------

    def reclaim(self, cursor: Any, count: int, min_idle_ms: int) -> tuple[Any, list[Entry]]:
        reply = self.client.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, start_id=cursor, count=count
        )
        next_cursor, raw = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        if deleted:
            self.result.deleted += len(deleted)
            log_event(
                logger,
                "streams_pending_entries_deleted",
                level=logging.ERROR,
                stream=self.stream,
                group=self.group,
                ids=[_id_text(i) for i in deleted[:20]],
                count=len(deleted),
            )
        if not raw:
            return next_cursor, []
        self.result.reclaimed += len(raw)
        ids = [_id_text(entry_id) for entry_id, _ in raw]
        deliveries = self._deliveries(ids)
        entries = [
            Entry(entry_id, dict(fields or {}), [], deliveries.get(entry_id, 1))
            for entry_id, (_, fields) in zip(ids, raw, strict=True)
        ]
        return next_cursor, entries

    def read_new(self, count: int) -> list[Entry]:
        reply: Any = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count
        )
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3: {stream: [entries]}
            raw = next(iter(reply.values()))
            raw = raw[0] if raw and isinstance(raw[0], list) else raw
        else:  # RESP2: [[stream, [entries]]]
            raw = reply[0][1]
        return [Entry(_id_text(entry_id), dict(fields or {}), [], 1) for entry_id, fields in raw]

    def _deliveries(self, ids: Sequence[str]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        counts: dict[str, int] = {}
        for entry_id, rows in zip(ids, pipe.execute(), strict=True):
            if rows:
                counts[entry_id] = int(rows[0]["times_delivered"])
        return counts

    # -- handling -----------------------------------------------------------------------------

    def process(self, entries: list[Entry]) -> bool:
        """Dead-letter, decode, hand over and ack one batch. False if the handler failed."""
        ready: list[Entry] = []
        for entry in entries:
            if self.decode:
                try:
                    entry = entry._replace(frames=decode_entry(entry.fields))
                except EnvelopeError as exc:
                    self._dead_letter(entry, f"corrupt envelope: {exc.reason}")
                    continue
            ready.append(entry)
        groups = self._group(ready)
        for index, group in enumerate(groups):
            self.result.handler_calls += 1
            try:
                outcome = self.handler(group)
            except Exception as exc:
                if self._poison(group, exc):
                    continue
                self._fail(group, groups[index + 1 :], exc)
                return False
            rejected = outcome.rejected if isinstance(outcome, Handled) else {}
            for entry in group:
                if entry.id in rejected:
                    self._dead_letter(entry, rejected[entry.id])
            done = [entry for entry in group if entry.id not in rejected]
            if done:
                self.client.xack(self.stream, self.group, *[entry.id for entry in done])
            self.result.handled += len(done)
            self.result.acked += len(done)
            self.result.frames += sum(len(entry.frames) for entry in done)
        return True

    def _group(self, entries: list[Entry]) -> list[list[Entry]]:
        """Entries delivered more than twice go one per call: a poison entry fails alone."""
        alone = 2 if self.max_deliveries is None else min(2, self.max_deliveries)
        batch = [e for e in entries if e.deliveries <= alone]
        singles = [[e] for e in entries if e.deliveries > alone]
        return ([batch] if batch else []) + singles

    def _is_transient(self, exc: BaseException) -> bool:
        if isinstance(self.retryable, tuple):
            return isinstance(exc, self.retryable)
        return bool(self.retryable(exc))

    def _poison(self, group: list[Entry], exc: Exception) -> bool:
        """Dead-letter a lone entry over `max_deliveries` that failed again on its own fault."""
        if self.max_deliveries is None or len(group) != 1:
            return False
        (entry,) = group
        if entry.deliveries <= self.max_deliveries or self._is_transient(exc):
            return False
        error = f"{type(exc).__name__}: {exc}"
        self._dead_letter(
            entry,
            f"delivered {entry.deliveries} times without an ack; failed again alone: {error}",
        )
        return True

    def _fail(self, group: list[Entry], untried: list[list[Entry]], exc: Exception) -> None:
        self.result.failed += len(group)
        self.result.error = f"{type(exc).__name__}: {exc}"
        self.result.fault = exc
        transient = self._is_transient(exc)
        self.result.transient = transient
        log_event(
            logger,
            "streams_handler_failed",
            level=logging.ERROR,
            stream=self.stream,
            group=self.group,
            consumer=self.consumer,
            entries=len(group),
            first_id=group[0].id,
            transient=transient,
            error=self.result.error,
        )
        give_back = [entry for batch in untried for entry in batch]
        if transient:
            give_back += group
        # Transient: no fault of theirs, retry them as soon as the next run (after any pause).
        self._restore_deliveries(give_back, idle_ms=self.min_idle_ms if transient else None)

    def _restore_deliveries(self, entries: list[Entry], idle_ms: int | None = None) -> None:
        """Undo this delivery's count for entries no handler really tried (XCLAIM RETRYCOUNT);
        with `idle_ms`, also make them look idle that long, i.e. reclaimable right away."""
        if not entries:
            return
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            pipe.xclaim(
                self.stream,
                self.group,
                self.consumer,
                0,
                [entry.id],
                idle=idle_ms,
                retrycount=max(0, entry.deliveries - 1),
                justid=True,
            )
        pipe.execute()

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        move_to_dead_letters(
            self.client,
            self.dead_stream,
            self.stream,
            self.group,
            self.consumer,
            entry.id,
            entry.fields,
            reason=reason,
            deliveries=entry.deliveries,
        )
        self.result.dead_lettered += 1
        self.result.acked += 1
        log_event(
            logger,
            "streams_dead_lettered",
            level=logging.ERROR,
            stream=self.stream,
            entry_id=entry.id,
            dead_stream=self.dead_stream,
            reason=reason,
        )


def _id_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

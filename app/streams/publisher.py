"""The listener's batcher + publisher: frames -> sealed batches -> Redis Streams, never dropped.

Used from the listener's asyncio loop (DESIGN §3, RTR-8, RTR-9):

    publisher = StreamPublisher(redis, names, journal_dir, settings)
    await publisher.start()             # adopts and replays any journal a dead listener left
    publisher.add(names.route(msg_type, ticker), Frame(raw, recv_ns, conn_id, sid, seq, gap))
    ...
    await publisher.close()             # flushes; whatever Redis cannot take goes to the journal

How a frame travels:
1. `add` packs the frame into its stream's open batch (O(1), synchronous, no await). A batch
   is sealed at `batch_frames` frames or `batch_interval_ms` after its first frame.
2. Sealed batches get a publisher-wide sequence number and queue in memory; one background
   task sends them to Redis in order, many per round trip, through a Lua script that XADDs
   each batch and records the last sequence number it applied under `kd:{g}:pub:{id}`. The
   script stops at the first batch it cannot add (stream at its high-water mark, OOM), so what
   landed is always a prefix, and a batch whose seq is not above the recorded one is skipped
   as already published. That makes every retry - after a timeout, a lost reply, a restart
   replaying a journal - idempotent: nothing is lost and nothing is added twice.
3. Backpressure, never drop (RTR-9): when Redis refuses, times out, is unreachable, a stream
   has `high_water_entries` entries its slowest group has not read, Redis `used_memory`
   reaches `high_water_memory_bytes`, or
   the in-memory bound `max_buffered_bytes` is reached, the publisher switches to *spilling*:
   every sealed batch (in-flight ones first, in order) is appended to the on-disk journal and
   the memory is released. A probe with exponential backoff waits for Redis to recover (and to
   fall below `low_water_ratio` x the high-water marks), replays the journal oldest first,
   deletes each replayed segment and switches back to direct sending once the journal is
   empty. Order per stream is preserved throughout.
4. Memory bound: open batches + queued + in-flight bytes <= `max_buffered_bytes` (+ one
   frame). If the journal is full too, `add` raises `JournalFull` and the frame is *not*
   accepted: the listener must stop reading (see docs/streams.md, failure modes).

What a process crash loses: only batches in memory (at most `max_buffered_bytes`, normally
about `batch_interval_ms` of frames). The journal and Redis keep the rest.
This module never parses frames and never decides their meaning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.config import StreamSettings
from app.logs import log_event
from app.streams.envelope import BatchBuilder, Frame, decode_frames
from app.streams.journal import Journal, JournalFull, JournalRecord
from app.streams.names import StreamNames

logger = logging.getLogger("kalshi_data.streams.publisher")

# KEYS[1] publisher key, KEYS[2..] one target stream per batch.
# ARGV[1] high-water entries (0 = off), ARGV[2] key ttl s, ARGV[3] publisher id,
# then per batch: seq, frame count, data. Returns {processed, added, status, detail}.
PUBLISH_LUA = """
-- Entries of a stream its slowest consumer group has not read yet (XLEN when no group exists
-- yet, or when Redis cannot tell a group's lag): the backlog the high-water mark bounds.
local function unread(key)
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) == 'table' and groups.err then
    return 0
  end
  if #groups == 0 then
    return redis.call('XLEN', key)
  end
  local worst = 0
  for _, group in ipairs(groups) do
    local lag = false
    for j = 1, #group, 2 do
      if group[j] == 'lag' then
        lag = group[j + 1]
      end
    end
    if not lag then
      lag = redis.call('XLEN', key)
    end
    if lag > worst then
      worst = lag
    end
  end
  return worst
end
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local last_s = nil
local high = tonumber(ARGV[1])
local processed, added = 0, 0
local status, detail = 'ok', ''
for i = 2, #KEYS do
  local base = 4 + (i - 2) * 3
  local seq = tonumber(ARGV[base])
  if seq > last then
    if high > 0 and unread(KEYS[i]) >= high then
      status, detail = 'highwater', KEYS[i]
      break
    end
    local res = redis.pcall('XADD', KEYS[i], '*', 'v', '1', 'n', ARGV[base + 1],
                            'p', ARGV[3], 'q', ARGV[base], 'd', ARGV[base + 2])
    if type(res) == 'table' and res.err then
      status, detail = 'error', res.err
      break
    end
    last = seq
    last_s = ARGV[base]
    added = added + 1
  end
  processed = processed + 1
end
if last_s then
  redis.call('SET', KEYS[1], last_s, 'EX', ARGV[2])
end
return {processed, added, status, detail}
"""

_REDIS_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


# (segment, from_ns, to_ns, problem): frames received in that stretch may be in the damaged
# part of a journal segment; the listener records it as a capture hole (docs/holes.md).
JournalLoss = Callable[[str, int, int, str], None]


class PublisherClosed(Exception):
    """`add` after `close`."""


@dataclass
class PublisherStats:
    """Counters (monotonic) and gauges for the metrics module; read `publisher.stats`."""

    frames_added: int = 0
    frames_published: int = 0  # landed in Redis, directly or by replay
    batches_published: int = 0
    batches_duplicate: int = 0  # skipped by the dedup key: had landed before a retry/replay
    frames_spilled: int = 0
    batches_spilled: int = 0
    frames_replayed: int = 0
    batches_replayed: int = 0
    spill_events: int = 0  # switches from direct sending to spilling
    recoveries: int = 0  # switches back
    redis_errors: int = 0
    journal_torn_bytes: int = 0
    journal_corrupt_segments: int = 0
    # gauges, refreshed when `stats` is read
    spilling: bool = False
    buffered_bytes: int = 0
    buffered_batches: int = 0
    journal_bytes: int = 0
    journal_segments: int = 0
    last_error: str = ""


class _OpenBatch:
    __slots__ = ("builder", "first_ns", "nbytes", "started")

    def __init__(self, started: float, first_ns: int) -> None:
        self.builder = BatchBuilder()
        self.nbytes = 0
        self.started = started
        self.first_ns = first_ns  # receive time of the batch's first frame


def default_publisher_id() -> str:
    """Unique per process start: `host:pid:start-time` (the dedup key is per publisher id)."""
    return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns():x}"


def open_redis(url: str, settings: StreamSettings) -> aioredis.Redis:
    """An asyncio Redis client suited to the publisher: bytes replies, bounded waits, and no
    hidden retries (the publisher decides itself when to retry and where batches wait)."""
    return aioredis.from_url(
        url,
        decode_responses=False,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class StreamPublisher:
    """Batches frames per stream and XADDs them; spills to a journal instead of ever dropping."""

    def __init__(
        self,
        redis: aioredis.Redis,
        names: StreamNames,
        journal_dir: Path,
        settings: StreamSettings,
        *,
        publisher_id: str | None = None,
        on_journal_loss: JournalLoss | None = None,
    ) -> None:
        self._redis = redis
        self._on_journal_loss = on_journal_loss
        self._settings = settings
        self.publisher_id = publisher_id or default_publisher_id()
        self.publisher_key = names.publisher_key(self.publisher_id)
        self._script = redis.register_script(PUBLISH_LUA)
        self._journal = Journal(
            journal_dir,
            segment_bytes=settings.journal_segment_bytes,
            max_bytes=settings.journal_max_bytes,
            fsync=settings.journal_fsync,
        )
        self._batch_frames = settings.batch_frames
        self._interval_s = settings.batch_interval_ms / 1000
        self._max_bytes = settings.max_buffered_bytes
        self._buffers: dict[str, _OpenBatch] = {}
        self._first_ns: dict[int, int] = {}  # batch seq -> first frame's receive ns
        self._sealed: deque[JournalRecord] = deque()
        self._inflight: list[JournalRecord] = []
        self._inflight_abandoned = False  # add() moved them to the journal mid-call
        self._buffered_bytes = 0
        self._seq = 0
        self._spilling = False
        self._journal_full: JournalFull | None = None
        self._probe_delay = settings.recovery_probe_min_s
        self._next_probe = 0.0
        self._next_memory_check = 0.0
        self._next_fsync = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._stats = PublisherStats()

    # -- the listener's API -----------------------------------------------------------------

    async def start(self) -> None:
        """Open (lock) the journal; if a previous listener left batches there, replay them
        before anything new reaches Redis. Then start the background sender."""
        self._journal.open()
        if not self._journal.is_empty:
            log_event(
                logger,
                "streams_journal_found",
                level=logging.WARNING,
                journal=str(self._journal.directory),
                segments=len(self._journal.closed_segments),
                bytes=self._journal.bytes,
            )
            self._spilling = True
            self._next_probe = 0.0
        self._task = asyncio.create_task(self._run(), name="stream-publisher")

    def add(self, stream: str, frame: Frame) -> None:
        """Accept one frame for `stream`. Never blocks, never drops.

        Raises TypeError/ValueError for a frame the envelope cannot hold (the frame is not
        accepted, its batch is unaffected), JournalFull when memory and journal are both
        exhausted (the frame is not accepted), PublisherClosed after close().
        """
        if self._closed:
            raise PublisherClosed("publisher is closed")
        if self._buffered_bytes >= self._max_bytes:
            self._relieve_memory()
        batch = self._buffers.get(stream)
        if batch is None:
            batch = self._buffers[stream] = _OpenBatch(time.monotonic(), frame.recv_ns)
            self._wake.set()
        size = batch.builder.add(frame)
        batch.nbytes += size
        self._buffered_bytes += size
        self._stats.frames_added += 1
        if batch.builder.count >= self._batch_frames:
            self._seal(stream, batch)

    async def flush(self, timeout: float | None = None) -> bool:
        """Seal every open batch and wait until everything (memory and journal) is in Redis.

        Returns False if that did not happen within `timeout` seconds (Redis still down).
        """
        for stream, batch in list(self._buffers.items()):
            self._seal(stream, batch)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._delivered():
            if self._task is None or self._task.done():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self._spilling:
                self._next_probe = min(self._next_probe, time.monotonic() + 0.05)
            self._wake.set()
            await asyncio.sleep(0.005)
        return True

    async def close(self, timeout: float = 10.0) -> bool:
        """Flush for up to `timeout` s, then stop; anything Redis did not take is journaled
        (replayed by the next start). Returns True if everything reached Redis."""
        if self._closed:
            return self._delivered()
        delivered = await self.flush(timeout)
        self._closed = True
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                # A journal replay in progress finishes its chunk and stops; one that cannot
                # within the bound is cancelled: its segment stays and the next start replays
                # it (entries already sent again are duplicates ingest stores once).
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log_event(logger, "streams_publisher_stop_cancelled", level=logging.WARNING)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._inflight and not self._inflight_abandoned:
            self._sealed.extendleft(reversed(self._inflight))
            self._inflight = []
        self._spill_sealed()
        self._journal.close()
        if self._sealed:
            lost = sum(r.nframes for r in self._sealed)
            log_event(
                logger,
                "streams_frames_lost_on_close",
                level=logging.ERROR,
                frames=lost,
                reason=str(self._journal_full),
            )
            raise JournalFull(f"{lost} frames could not be journaled: {self._journal_full}")
        return delivered

    @property
    def stats(self) -> PublisherStats:
        s = self._stats
        s.spilling = self._spilling
        s.buffered_bytes = self._buffered_bytes
        inflight = 0 if self._inflight_abandoned else len(self._inflight)
        s.buffered_batches = len(self._sealed) + inflight
        s.journal_bytes = self._journal.bytes
        s.journal_segments = self._journal.segments
        return s

    @property
    def spilling(self) -> bool:
        return self._spilling

    def durable_before_ns(self, now_ns: int | None = None) -> int:
        """Every frame added with a receive time before this is in Redis or the journal.

        The oldest receive time among batches still only in memory (open, sealed or in
        flight), else `now_ns`. A listener killed now loses nothing received earlier, which
        is where the next listener starts the hole it records (docs/holes.md).
        """
        now = time.time_ns() if now_ns is None else now_ns
        self._prune_first_ns()
        candidates = [batch.first_ns for batch in self._buffers.values()]
        candidates.extend(self._first_ns.values())
        return min([now, *candidates])

    def _prune_first_ns(self) -> None:
        """Forget the first-frame times of batches that are no longer only in memory."""
        pending = [*self._sealed, *([] if self._inflight_abandoned else self._inflight)]
        alive = {record.seq for record in pending}
        for seq in [seq for seq in self._first_ns if seq not in alive]:
            del self._first_ns[seq]

    # -- sealing and spilling (synchronous, called from add) --------------------------------

    def _seal(self, stream: str, batch: _OpenBatch) -> None:
        del self._buffers[stream]
        data = batch.builder.finish()
        self._seq += 1
        record = JournalRecord(
            stream, self.publisher_id, self.publisher_key, self._seq, batch.builder.count, data
        )
        self._buffered_bytes += len(data) - batch.nbytes
        self._first_ns[self._seq] = batch.first_ns
        if len(self._first_ns) > 2 * (len(self._sealed) + len(self._inflight)) + 256:
            self._prune_first_ns()  # bounded without a heartbeat reading it (amortized O(1))
        self._sealed.append(record)
        if self._spilling:
            self._spill_sealed()
        else:
            self._wake.set()

    def _relieve_memory(self) -> None:
        for stream, batch in list(self._buffers.items()):
            self._seal(stream, batch)
        if not self._spilling:
            self._enter_spill(f"in-memory bound max_buffered_bytes={self._max_bytes} reached")
        else:
            self._spill_sealed()
        if self._buffered_bytes >= self._max_bytes:
            raise self._journal_full or JournalFull("in-memory bound reached and journal full")

    def _spill_sealed(self) -> None:
        """Move queued batches, oldest first, from memory to the journal while it has room."""
        while self._sealed:
            record = self._sealed[0]
            try:
                self._journal.append(record)
            except JournalFull as exc:
                if self._journal_full is None:
                    log_event(logger, "streams_journal_full", level=logging.ERROR, error=str(exc))
                self._journal_full = exc
                return
            self._sealed.popleft()
            self._buffered_bytes -= len(record.data)
            self._stats.batches_spilled += 1
            self._stats.frames_spilled += record.nframes
        self._journal_full = None

    def _enter_spill(self, reason: str) -> None:
        if self._inflight and not self._inflight_abandoned:
            # The call carrying them may still land; replaying them is safe (dedup key).
            self._sealed.extendleft(reversed(self._inflight))
            self._inflight_abandoned = True
        if not self._spilling:
            self._spilling = True
            self._stats.spill_events += 1
            self._stats.last_error = reason
            self._probe_delay = self._settings.recovery_probe_min_s
            self._next_probe = time.monotonic() + self._probe_delay
            log_event(logger, "streams_spill_started", level=logging.WARNING, reason=reason)
        self._spill_sealed()

    def _delivered(self) -> bool:
        return (
            not self._spilling
            and not self._sealed
            and not self._inflight
            and not self._buffers
            and self._journal.is_empty
        )

    # -- the background sender ---------------------------------------------------------------

    async def _run(self) -> None:
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # asyncio.wait_for (3.11) can swallow a cancel that races a completion
                raise asyncio.CancelledError
            await self._wait()
            if self._stopping:
                return
            try:
                await self._step()
            except JournalFull:
                pass  # already logged; batches stay in memory and add() pushes back
            except Exception as exc:  # never let the sender die silently
                self._stats.last_error = repr(exc)
                log_event(logger, "streams_publisher_error", level=logging.ERROR, error=repr(exc))
                await asyncio.sleep(self._settings.recovery_probe_min_s)

    async def _wait(self) -> None:
        now = time.monotonic()
        deadlines = [batch.started + self._interval_s for batch in self._buffers.values()]
        if self._settings.journal_fsync == "interval":
            deadlines.append(self._next_fsync)
        if self._spilling:
            deadlines.append(self._next_probe)
        elif self._sealed:
            deadlines.append(now)
        elif self._settings.high_water_memory_bytes:
            deadlines.append(self._next_memory_check)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        if timeout == 0.0:
            self._wake.clear()
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _step(self) -> None:
        now = time.monotonic()
        for stream, batch in list(self._buffers.items()):
            if now - batch.started >= self._interval_s:
                self._seal(stream, batch)
        if self._settings.journal_fsync == "interval" and now >= self._next_fsync:
            self._journal.sync()
            self._next_fsync = now + self._settings.journal_fsync_interval_s
        if not self._spilling:
            await self._check_memory(now)
        while not self._spilling and self._sealed and not self._stopping:
            await self._send_direct()
        if self._spilling:
            self._spill_sealed()
            if time.monotonic() >= self._next_probe:
                await self._recover()

    async def _check_memory(self, now: float) -> None:
        high = self._settings.high_water_memory_bytes
        if not high or now < self._next_memory_check:
            return
        self._next_memory_check = now + self._settings.memory_check_interval_s
        try:
            used = await self._used_memory()
        except _REDIS_FAILURES as exc:
            self._stats.redis_errors += 1
            self._enter_spill(f"redis unreachable: {exc!r}")
            return
        if used >= high:
            self._enter_spill(f"redis used_memory {used} >= high_water_memory_bytes {high}")

    async def _used_memory(self) -> int:
        info = await asyncio.wait_for(
            self._redis.info("memory"), timeout=self._settings.redis_timeout_s
        )
        return int(info["used_memory"])

    async def _send_direct(self) -> None:
        chunk = self._take_chunk()
        self._inflight = chunk
        self._inflight_abandoned = False
        try:
            processed, added, status, detail = await self._call(
                chunk, self._settings.high_water_entries
            )
        except _REDIS_FAILURES as exc:
            self._stats.redis_errors += 1
            if not self._inflight_abandoned:
                self._sealed.extendleft(reversed(chunk))
            self._inflight = []
            self._enter_spill(f"redis error: {exc!r}")
            return
        abandoned = self._inflight_abandoned
        self._inflight = []
        self._count_published(chunk, processed, added)
        if abandoned:
            return  # add() already journaled the whole chunk; the replay skips what landed
        self._buffered_bytes -= sum(len(r.data) for r in chunk[:processed])
        if processed < len(chunk):
            self._sealed.extendleft(reversed(chunk[processed:]))
            self._enter_spill(f"{status}: {detail}")

    def _take_chunk(self) -> list[JournalRecord]:
        chunk = [self._sealed.popleft()]
        size = len(chunk[0].data)
        limit_n, limit_bytes = self._settings.max_call_batches, self._settings.max_call_bytes
        while self._sealed and len(chunk) < limit_n:
            nxt = self._sealed[0]
            if size + len(nxt.data) > limit_bytes:
                break
            chunk.append(self._sealed.popleft())
            size += len(nxt.data)
        return chunk

    async def _call(self, records: Sequence[JournalRecord], high: int) -> tuple[int, int, str, str]:
        """Run the publish script for records of ONE publisher, in order."""
        keys: list[Any] = [records[0].publisher_key]
        args: list[Any] = [high, self._settings.publisher_key_ttl_s, records[0].publisher_id]
        for record in records:
            keys.append(record.stream)
            args.append(record.seq)
            args.append(record.nframes)
            args.append(record.data)
        reply = await asyncio.wait_for(
            self._script(keys=keys, args=args), timeout=self._settings.redis_timeout_s
        )
        processed, added, status, detail = reply
        return int(processed), int(added), _text(status), _text(detail)

    def _count_published(
        self, records: Sequence[JournalRecord], processed: int, added: int
    ) -> None:
        landed = records[processed - added : processed]  # skipped duplicates come first
        self._stats.batches_published += added
        self._stats.frames_published += sum(r.nframes for r in landed)
        self._stats.batches_duplicate += processed - added

    # -- recovery ----------------------------------------------------------------------------

    async def _recover(self) -> None:
        try:
            await asyncio.wait_for(self._redis.ping(), timeout=self._settings.redis_timeout_s)
            if self._settings.high_water_memory_bytes:
                used = await self._used_memory()
                if used >= self._settings.low_water_memory_bytes:
                    self._back_off(f"redis used_memory {used} above low-water mark")
                    return
        except _REDIS_FAILURES as exc:
            self._back_off(f"redis unreachable: {exc!r}")
            return
        self._journal.rotate()
        for path in self._journal.closed_segments:
            if not await self._replay_segment(path):
                return
            if self._stopping:
                return
        if self._journal.active_records:
            self._next_probe = time.monotonic()  # more spilled meanwhile: go round again
            return
        self._spilling = False
        self._probe_delay = self._settings.recovery_probe_min_s
        self._stats.recoveries += 1
        log_event(logger, "streams_spill_recovered", replayed=self._stats.batches_replayed)
        self._wake.set()

    async def _replay_segment(self, path: Path) -> bool:
        reader = self._journal.read(path)
        chunk: list[JournalRecord] = []
        size = 0
        last_good: JournalRecord | None = None
        limit_n, limit_bytes = self._settings.max_call_batches, self._settings.max_call_bytes
        for record in reader:
            if self._stopping:
                return False  # the segment stays; the next start replays it
            if chunk and (
                record.publisher_key != chunk[0].publisher_key
                or len(chunk) >= limit_n
                or size + len(record.data) > limit_bytes
            ):
                if not await self._replay_chunk(chunk):
                    return False
                chunk, size = [], 0
            chunk.append(record)
            size += len(record.data)
            last_good = record
        if chunk and not await self._replay_chunk(chunk):
            return False
        if reader.problem:
            self._report_loss(path, last_good, reader.problem)
            log_event(
                logger,
                "streams_journal_segment_damaged",
                level=logging.ERROR if reader.corrupt else logging.WARNING,
                segment=str(path),
                problem=reader.problem,
                records_replayed=reader.records,
            )
            self._stats.journal_torn_bytes += reader.torn_bytes
            if reader.corrupt:
                self._stats.journal_corrupt_segments += 1
                self._journal.quarantine(path)
                return True
        self._journal.delete(path)
        return True

    def _report_loss(self, path: Path, last_good: JournalRecord | None, problem: str) -> None:
        """What a damaged segment may have lost: frames received after its last whole record
        (or, with none, around its last write) up to its last write."""
        if self._on_journal_loss is None:
            return
        try:
            written_ns = path.stat().st_mtime_ns
        except OSError:
            written_ns = time.time_ns()
        from_ns = written_ns
        if last_good is not None:
            frames = decode_frames(last_good.data, last_good.nframes)
            from_ns = min(written_ns, max(f.recv_ns for f in frames))
        self._on_journal_loss(str(path), from_ns, max(written_ns, from_ns), problem)

    async def _replay_chunk(self, chunk: list[JournalRecord]) -> bool:
        try:
            processed, added, status, detail = await self._call(
                chunk, self._settings.low_water_entries
            )
        except _REDIS_FAILURES as exc:
            self._stats.redis_errors += 1
            self._back_off(f"redis error during replay: {exc!r}")
            return False
        self._count_published(chunk, processed, added)
        landed = chunk[processed - added : processed]
        self._stats.batches_replayed += added
        self._stats.frames_replayed += sum(r.nframes for r in landed)
        if processed < len(chunk):
            self._back_off(f"replay paused, {status}: {detail}")
            return False
        return True

    def _back_off(self, reason: str) -> None:
        self._stats.last_error = reason
        self._next_probe = time.monotonic() + self._probe_delay
        self._probe_delay = min(self._probe_delay * 2, self._settings.recovery_probe_max_s)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

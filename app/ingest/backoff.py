"""The shared pause of a gatherer's drains after a database fault (docs/ingest.md).

When a write fails on the database (app.ingest.faults), every drain of the gatherer would fail
the same way: they share one database. So the pause is kept in Redis, in one hash per gatherer
(`kd:{g}:ingest:db_fault`: failures, until_ms, kind, error), and every drain run checks it first
and returns at once while it lasts. The pause doubles with each fault, from `db_retry_min_s` to
`db_retry_max_s` (settings.streams), and is cleared by the first write that succeeds.

Faults reported while a pause is already running (several workers failing at once) do not
double it again: only the first fault after a pause ran out counts as a new failure. Times are
Redis's (`TIME`), so worker clocks do not matter. The entries stay pending meanwhile; the
drain makes them reclaimable at once (docs/streams.md), so the first run after the pause
retries them. Never raises on Redis errors of its own: a drain without the gate is just a
drain that retries every beat tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from app.logs import log_event

log = logging.getLogger(__name__)

# KEYS[1] the hash; ARGV: min ms, max ms, kind, error. Returns {failures, pause ms}.
_RECORD_LUA = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'until_ms') or '0')
if now_ms < until_ms then
  return {failures, until_ms - now_ms}
end
failures = failures + 1
local pause = tonumber(ARGV[1]) * math.pow(2, math.min(failures - 1, 40))
pause = math.floor(math.min(pause, tonumber(ARGV[2])))
redis.call('HSET', KEYS[1], 'failures', failures, 'until_ms', now_ms + pause,
           'kind', ARGV[3], 'error', ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.max(pause * 4, 3600000))
return {failures, pause}
"""

# KEYS[1] the hash. Returns the pause left in ms (0 = none) and the failures so far.
_REMAINING_LUA = """
local until_ms = redis.call('HGET', KEYS[1], 'until_ms')
if not until_ms then return {0, 0} end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
return {math.max(0, tonumber(until_ms) - now_ms), failures}
"""


def backoff_key(gatherer: str) -> str:
    return f"kd:{gatherer}:ingest:db_fault"


@dataclass(frozen=True)
class Pause:
    """The gate's state: seconds left (0 = go) and consecutive faults so far."""

    remaining_s: float
    failures: int


class DatabaseBackoff:
    """The gatherer-wide pause after database faults (see the module docstring)."""

    def __init__(self, client: redis.Redis, gatherer: str, min_s: float, max_s: float) -> None:
        self.client = client
        self.gatherer = gatherer
        self.key = backoff_key(gatherer)
        self.min_ms = max(1, round(min_s * 1000))
        self.max_ms = max(self.min_ms, round(max_s * 1000))

    def check(self) -> Pause:
        """The pause left now; Pause(0, failures) once it ran out (failures > 0 = not healed)."""
        try:
            left_ms, failures = self.client.eval(_REMAINING_LUA, 1, self.key)
        except redis.RedisError as exc:
            log_event(log, "ingest.backoff_unavailable", logging.WARNING, error=str(exc))
            return Pause(0.0, 0)
        return Pause(int(left_ms) / 1000, int(failures))

    def record_fault(self, kind: str, error: str) -> Pause:
        """Count a fault (unless a pause is already running) and return the pause in force."""
        try:
            failures, pause_ms = self.client.eval(
                _RECORD_LUA, 1, self.key, self.min_ms, self.max_ms, kind, error[:500]
            )
        except redis.RedisError as exc:
            log_event(log, "ingest.backoff_unavailable", logging.WARNING, error=str(exc))
            return Pause(self.min_ms / 1000, 1)
        return Pause(int(pause_ms) / 1000, int(failures))

    def clear(self) -> bool:
        """The database took a write: drop the pause. True if there was one."""
        try:
            return bool(self.client.delete(self.key))
        except redis.RedisError as exc:
            log_event(log, "ingest.backoff_unavailable", logging.WARNING, error=str(exc))
            return False

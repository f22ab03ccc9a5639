"""The registry's change feed to the listeners, in Redis (DESIGN §2: registry changes reach
the listener, which adds/removes tickers with `update_subscription`).

Keys for gatherer `g`:

| key | type | holds |
|---|---|---|
| `kd:g:registry` | stream | one entry per change: `version`, `added`, `removed` (JSON lists) |
| `kd:g:registry:tickers` | set | the tickers the listener should hold right now |
| `kd:g:registry:version` | string | a counter, +1 per stream entry |
| `kd:g:registry:lock` | lock | serializes writers (lifecycle updates vs the full refresh) |

The set, the counter and the stream entry change together in one Lua script, and only for
tickers that really entered or left the set, so a listener that (1) reads `snapshot()` and
(2) follows the stream from the snapshot's entry id sees every change exactly once. A version
that skips a number means the stream was trimmed past it: reload the snapshot. The stream is a
notification channel, not data (the database is the source of truth), so MAXLEN trimming is
safe here, unlike the capture streams (DESIGN §3).

Publishing happens after the database commit. A crash in between loses the notification, not
the change: `refresh()` (beat, every `subscription_refresh_s`) recomputes the whole set from
the database and publishes the difference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from app.config import RegistrySettings
from app.logs import log_event
from app.registry.membership import desired_tickers
from app.streams.names import PREFIX

log = logging.getLogger("app.registry.feed")

PUBLISH_CHUNK = 5_000

# KEYS: set, version, stream. ARGV: maxlen, number added, added..., removed...
_PUBLISH = """
local added, removed = {}, {}
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then added[#added + 1] = ARGV[i] end
end
for i = 3 + n, #ARGV do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then removed[#removed + 1] = ARGV[i] end
end
if #added == 0 and #removed == 0 then return false end
local function list(t) if #t == 0 then return '[]' end return cjson.encode(t) end
local version = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*',
  'version', version, 'added', list(added), 'removed', list(removed))
return {version, id, #added, #removed}
"""


@dataclass(frozen=True)
class Change:
    """One stream entry: tickers that entered and left the set, at `version`."""

    id: str
    version: int
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    """The whole set at `version`; follow the stream after `stream_id` ("0" = from start)."""

    version: int
    tickers: frozenset[str]
    stream_id: str


@dataclass
class Published:
    added: int = 0
    removed: int = 0
    version: int | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ChangeFeed:
    """Publisher and reader of one gatherer's registry change feed."""

    def __init__(
        self, client: redis.Redis, gatherer: str, settings: RegistrySettings | None = None
    ) -> None:
        self.redis = client
        self.settings = settings or RegistrySettings()
        base = f"{PREFIX}:{gatherer}:registry"
        self.stream_key = base
        self.set_key = f"{base}:tickers"
        self.version_key = f"{base}:version"
        self.lock_key = f"{base}:lock"
        self._staging_key = f"{base}:tickers:next"
        self._script = client.register_script(_PUBLISH)

    @classmethod
    def from_url(
        cls, url: str, gatherer: str, settings: RegistrySettings | None = None
    ) -> ChangeFeed:
        return cls(redis.Redis.from_url(url), gatherer, settings)

    def lock(self) -> Any:
        return self.redis.lock(
            self.lock_key,
            timeout=self.settings.lock_timeout_s,
            blocking_timeout=self.settings.lock_timeout_s,
        )

    # ---- writing -------------------------------------------------------------------------

    def _publish_unlocked(self, added: Sequence[str], removed: Sequence[str]) -> Published:
        out = Published()
        added, removed = list(dict.fromkeys(added)), list(dict.fromkeys(removed))
        both = set(added) & set(removed)
        if both:
            raise ValueError(f"tickers both added and removed: {sorted(both)[:5]}")
        for start in range(0, max(len(added), len(removed)), PUBLISH_CHUNK):
            chunk_add = added[start : start + PUBLISH_CHUNK]
            chunk_remove = removed[start : start + PUBLISH_CHUNK]
            reply = self._script(
                keys=[self.set_key, self.version_key, self.stream_key],
                args=[
                    self.settings.change_stream_maxlen,
                    len(chunk_add),
                    *chunk_add,
                    *chunk_remove,
                ],
            )
            if reply:
                out.version = int(reply[0])
                out.added += int(reply[2])
                out.removed += int(reply[3])
        return out

    def publish(self, added: Iterable[str] = (), removed: Iterable[str] = ()) -> Published:
        """Add/remove tickers; publishes only what really changed. Returns the counts."""
        added, removed = list(added), list(removed)
        if not added and not removed:
            return Published()
        with self.lock():
            out = self._publish_unlocked(added, removed)
        if out.version is not None:
            log_event(
                log,
                "registry_published",
                version=out.version,
                added=out.added,
                removed=out.removed,
            )
        return out

    def refresh(self, conn: Any, now: datetime | None = None) -> Published:
        """Recompute the whole set from the database and publish the difference.

        Holds the lock from the database read to the publish, so a lifecycle update committed
        meanwhile is published after this and not undone by it. Streams tickers through a
        staging set in Redis; only the differences come back to Python. Reads in the caller's
        transaction (a server-side cursor needs one) and leaves it to the caller to end.
        """
        now = now or datetime.now(UTC)
        with self.lock():
            self.redis.delete(self._staging_key)
            total = 0
            for batch in desired_tickers(conn, now, self.settings):
                self.redis.sadd(self._staging_key, *batch)
                total += len(batch)
            added = [_text(t) for t in self.redis.sdiff([self._staging_key, self.set_key])]
            removed = [_text(t) for t in self.redis.sdiff([self.set_key, self._staging_key])]
            self.redis.delete(self._staging_key)
            out = self._publish_unlocked(sorted(added), sorted(removed))
        log_event(
            log,
            "registry_refreshed",
            subscribed=total,
            added=out.added,
            removed=out.removed,
            version=out.version,
        )
        return out

    # ---- reading (the listener's side) ---------------------------------------------------

    def version(self) -> int:
        value = self.redis.get(self.version_key)
        return int(value) if value is not None else 0

    def snapshot(self) -> Snapshot:
        """The whole set, its version and the stream position, read atomically."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(self.version_key)
        pipe.smembers(self.set_key)
        pipe.xrevrange(self.stream_key, count=1)
        version, members, last = pipe.execute()
        return Snapshot(
            version=int(version) if version is not None else 0,
            tickers=frozenset(_text(m) for m in members),
            stream_id=_text(last[0][0]) if last else "0",
        )

    def read(
        self, after: str = "0", *, count: int = 1000, block_ms: int | None = None
    ) -> list[Change]:
        """Stream entries after id `after` (block up to `block_ms` when there are none)."""
        reply: Any = self.redis.xread({self.stream_key: after}, count=count, block=block_ms)
        changes = []
        for _, entries in reply or []:
            for entry_id, raw in entries:
                data = {_text(k): v for k, v in raw.items()}
                changes.append(
                    Change(
                        id=_text(entry_id),
                        version=int(data["version"]),
                        added=tuple(orjson.loads(data["added"])),
                        removed=tuple(orjson.loads(data["removed"])),
                    )
                )
        return changes

    def clear(self) -> None:
        """Delete every key of this feed (tests, or a gatherer being decommissioned)."""
        self.redis.delete(self.stream_key, self.set_key, self.version_key, self._staging_key)

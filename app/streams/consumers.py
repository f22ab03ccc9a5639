"""Consumer groups and consumers of the ingest side: naming, creation, the dead-consumer janitor.

A consumer is named `hostname:pid` (design-facts §1), so each Celery child process is one
consumer and a restarted process is a new one. Consumers of dead processes linger in the group
with their pending entries until a drain reclaims those (XAUTOCLAIM); after that they hold
nothing and the janitor deletes those that have been idle for `janitor_idle_ms` (default 1 h).
Deleting a consumer that still has pending entries would make them unclaimable, so the check
and the delete run in one Lua script: atomic, never racing a read.
"""

from __future__ import annotations

import os
import socket

import redis
from redis.exceptions import ResponseError

# KEYS[1] stream; ARGV[1] group, ARGV[2] minimum idle ms. Returns the deleted consumer names.
_REAP_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local deleted = {}
local idle_ms = tonumber(ARGV[2])
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > idle_ms then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted[#deleted + 1] = info['name']
  end
end
return deleted
"""


def consumer_name() -> str:
    """`hostname:pid` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_group(client: redis.Redis, stream: str, group: str) -> bool:
    """Create `group` on `stream` (and the stream) if missing, reading from the very first
    entry. Returns True if it was created now."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


def reap_idle_consumers(client: redis.Redis, stream: str, group: str, idle_ms: int) -> list[str]:
    """Delete consumers of `group` that hold no pending entry and were idle over `idle_ms`."""
    try:
        reply = client.eval(_REAP_LUA, 1, stream, group, idle_ms)
    except ResponseError as exc:
        if "NOGROUP" in str(exc):
            return []
        raise
    return [name.decode() if isinstance(name, bytes) else str(name) for name in reply or []]

"""Safe trimming of a stream: only entries every consumer group is done with (DESIGN §3).

Redis 7.0 `XTRIM` ignores consumer groups: a MAXLEN or MINID past a pending entry deletes it,
and the next XAUTOCLAIM silently drops it from the pending list (design-facts §2, measured).
So the floor of each group is the smallest id it may still need:

* the smallest pending id (`XPENDING` summary `min`) when it has pending entries,
* else its `last-delivered-id` (everything up to it was delivered and acked; everything after
  it is still to be read).

The stream is trimmed with `XTRIM MINID` at the lowest floor over all groups (MINID removes ids
strictly below it, so the floor entry itself stays). A stream without any group is never
trimmed (nobody has read it yet), and MAXLEN is never used. Reading the groups and trimming
run in one Lua script, so a group created or a read made in between cannot be overtaken.
With `retain_ms`, entries younger than that are kept too (floor = min(floor, now - retain)).
"""

from __future__ import annotations

from typing import NamedTuple

import redis

# KEYS[1] stream; ARGV[1] retain ms (0 = none); ARGV[2] '~' or '='.
# Returns {removed, threshold or '', status}.
_TRIM_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 'no stream'} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, '', 'no group'} end
local best, best_ms, best_seq = nil, 0, 0
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local floor = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    floor = redis.call('XPENDING', KEYS[1], info['name'])[2]
  end
  local dash = string.find(floor, '-', 1, true)
  local ms = tonumber(string.sub(floor, 1, dash - 1))
  local seq = tonumber(string.sub(floor, dash + 1))
  if best == nil or ms < best_ms or (ms == best_ms and seq < best_seq) then
    best, best_ms, best_seq = floor, ms, seq
  end
end
local retain = tonumber(ARGV[1])
if retain > 0 then
  local t = redis.call('TIME')
  local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - retain
  if cutoff < best_ms then
    best = string.format('%.0f', math.max(cutoff, 0)) .. '-0'
  end
end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2], best)
return {removed, best, 'ok'}
"""


class TrimResult(NamedTuple):
    stream: str
    removed: int
    threshold: str | None  # the MINID used; None when nothing may be trimmed
    status: str  # 'ok', 'no stream', 'no group'


def trim_stream(
    client: redis.Redis, stream: str, *, retain_ms: int = 0, approximate: bool = True
) -> TrimResult:
    """Trim `stream` below the oldest entry any of its groups still needs."""
    removed, threshold, status = client.eval(
        _TRIM_LUA, 1, stream, retain_ms, "~" if approximate else "="
    )
    text = threshold.decode() if isinstance(threshold, bytes) else str(threshold)
    state = status.decode() if isinstance(status, bytes) else str(status)
    return TrimResult(stream, int(removed), text or None, state)

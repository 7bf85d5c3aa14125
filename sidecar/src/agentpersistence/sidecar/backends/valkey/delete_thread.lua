-- Delete a thread's keys, at most ARGV[1] checkpoints per call; call again while it says more.
-- KEYS[1] thread base. Returns {more (0/1), '', ns, id, run, ...}: the runs of the deleted
-- checkpoints (the '' stands where prune.lua returns where to resume).
local base, left = KEYS[1], tonumber(ARGV[1])
local out = {0, ''}

while left > 0 do
  local first = redis.call('ZRANGE', ns_key(base), 0, 0)
  if #first == 0 then
    redis.call('UNLINK', ns_key(base), latest_key(base))
    return out
  end
  local ns = first[1]
  local ids = ids_key(base, ns)
  local popped = redis.call('ZRANGE', ids, 0, left - 1)
  for _, id in ipairs(popped) do drop(base, ns, id, out) end
  left = left - #popped
  if redis.call('EXISTS', ids) == 0 then
    redis.call('ZREM', ns_key(base), ns)
    redis.call('HDEL', latest_key(base), ns)
  end
end
out[1] = 1
return out

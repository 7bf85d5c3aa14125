-- Keep only the newest checkpoint (and its writes) of each namespace of a thread, deleting at
-- most ARGV[1] checkpoints per call. KEYS[1] thread base. ARGV: budget, resume ns (opt).
-- Returns {more (0/1), resume ns, ns, id, run, ...} for deleted checkpoints of runs.
local base, left, resume = KEYS[1], tonumber(ARGV[1]), opt(ARGV[2])
local out = {0, ''}

local function prune_namespace(ns)
  local ids = ids_key(base, ns)
  local keep = latest_id(base, ns)
  local ranges = {{'-', '+'}}
  if keep then ranges = {{'-', '(' .. keep}, {'(' .. keep, '+'}} end
  for _, range in ipairs(ranges) do
    local doomed = redis.call('ZRANGEBYLEX', ids, range[1], range[2], 'LIMIT', 0, left)
    for _, id in ipairs(doomed) do drop(base, ns, id, out) end
    left = left - #doomed
    if left <= 0 then
      out[1], out[2] = 1, ns
      return true
    end
  end
  if not keep then
    redis.call('ZREM', ns_key(base), ns)
    redis.call('HDEL', latest_key(base), ns)
  end
  return nil
end

each_namespace(base, resume, prune_namespace)
return out

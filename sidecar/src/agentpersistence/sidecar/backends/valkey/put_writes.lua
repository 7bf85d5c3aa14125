-- Store all pending writes of one request atomically, beside their checkpoint.
-- KEYS[1] thread base. ARGV: ns, id, ttl, then (field, value, replace) triples; replace '1'
-- overwrites a stored write with the same field, '0' keeps it (HSETNX).
local base, ns, id, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = cp_key(base, ns, id)

for i = 4, #ARGV, 3 do
  if ARGV[i + 2] == '1' then
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  else
    redis.call('HSETNX', key, ARGV[i], ARGV[i + 1])
  end
end

local ids = ids_key(base, ns)
if redis.call('HEXISTS', key, 'checkpoint') == 0 then
  -- Writes for a checkpoint not stored (yet): index them so thread deletes find them.
  redis.call('ZADD', ids, 0, id)
  redis.call('ZADD', ns_key(base), 0, ns)
end
expire_all(ttl, key, ids, ns_key(base), latest_key(base))
return 1

-- Write checkpoints read by export.lua into another thread (copy_thread): each replaces a
-- stored checkpoint with the same id; its writes are added to the stored ones, replacing
-- equal fields. KEYS[1] target thread base. ARGV: ttl, then per checkpoint: ns, id, number of
-- flat field items n, then n items (field, value, ...).
local base, ttl = KEYS[1], tonumber(ARGV[1])
local i = 2
while i <= #ARGV do
  local ns, id, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local key = cp_key(base, ns, id)
  redis.call('HDEL', key, 'type', 'checkpoint', 'metadata', 'parent', 'run')
  hset_flat(key, ARGV, i + 3, i + 2 + n)
  local ids = ids_key(base, ns)
  redis.call('ZADD', ids, 0, id)
  redis.call('ZADD', ns_key(base), 0, ns)
  raise_latest(base, ns, id)
  expire_all(ttl, key, ids, ns_key(base), latest_key(base))
  i = i + 3 + n
end
return 1

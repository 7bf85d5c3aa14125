-- Store one checkpoint (its pending writes, if any, stay): one call per put.
-- KEYS[1] thread base. ARGV: ns, id, type, checkpoint, metadata, parent (opt), run (opt), ttl.
local base, ns, id = KEYS[1], ARGV[1], ARGV[2]
local parent, run, ttl = opt(ARGV[6]), opt(ARGV[7]), tonumber(ARGV[8])
local key = cp_key(base, ns, id)

redis.call('HDEL', key, 'parent', 'run')
local fields = {'type', ARGV[3], 'checkpoint', ARGV[4], 'metadata', ARGV[5]}
if parent then
  fields[#fields + 1] = 'parent'
  fields[#fields + 1] = parent
end
if run then
  fields[#fields + 1] = 'run'
  fields[#fields + 1] = run
end
redis.call('HSET', key, unpack(fields))

local ids = ids_key(base, ns)
redis.call('ZADD', ids, 0, id)
redis.call('ZADD', ns_key(base), 0, ns)
raise_latest(base, ns, id)

if ttl > 0 then
  expire_all(ttl, key, ids, ns_key(base), latest_key(base))
  -- Drop up to two index entries whose checkpoint expired, so the index does not outgrow
  -- the thread (ids expire roughly oldest first, and each put adds one).
  for _, old in ipairs(redis.call('ZRANGE', ids, 0, 1)) do
    if redis.call('EXISTS', cp_key(base, ns, old)) == 1 then break end
    redis.call('ZREM', ids, old)
  end
end
return 1

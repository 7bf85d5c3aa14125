-- Put or delete one item: one call per item a batch writes, after the batch's reads.
-- KEYS[1] store base. ARGV: member, 'put' or 'del', then for 'put': updated_at (seconds,
-- sidecar clock), ttl (ms, 0 = none), value, prefix tags, vector blobs...
-- Keeps created_at of a live item; replaces its vectors (dropping those past the new count).
local base, member, mode = KEYS[1], ARGV[1], ARGV[2]
local doc = doc_key(base, member)
local labels = split_member(member)
local old = redis.call('HMGET', doc, 'created_at', 'nvec')
local nvec = 0
if mode == 'put' then nvec = #ARGV - 6 end
for i = nvec, (tonumber(old[2]) or 0) - 1 do redis.call('DEL', vec_key(base, member, i)) end
redis.call('DEL', doc)

if mode == 'del' then
  unindex(base, member)
  return 0
end

local now, ttl, value, tags = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
redis.call('HSET', doc, 'm', member, 'value', value, 'created_at', old[1] or now,
  'updated_at', now, 'ttl', ttl, 'nvec', nvec)
for i = 0, nvec - 1 do
  local key = vec_key(base, member, i)
  redis.call('DEL', key)
  redis.call('HSET', key, 'vec', ARGV[7 + i], 'nsp', tags, 'm', member)
end
for depth = 0, #labels do
  redis.call('ZADD', prefix_key(base, labels, depth), '-' .. now, member)
end
redis.call('ZADD', registry_key(base), 0, ns_member(labels))
if ttl > 0 then
  expire_item(base, member, labels, nvec, ttl, now_ms())
else
  redis.call('ZADD', items_key(base, labels), '+inf', member)
  redis.call('ZREM', expiry_key(base), member)
end
return 1

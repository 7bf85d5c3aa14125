-- One checkpoint with its pending writes: one call per get_tuple.
-- KEYS[1] thread base. ARGV: ns, id (opt; nil = the namespace's latest).
-- Returns nil or {id, flat HGETALL of the checkpoint hash}.
local base, ns, id = KEYS[1], ARGV[1], opt(ARGV[2])

if id then
  local fields = redis.call('HGETALL', cp_key(base, ns, id))
  if has_checkpoint(fields) then return {id, fields} end
  return nil
end

id = redis.call('HGET', latest_key(base), ns)
if id then
  local fields = redis.call('HGETALL', cp_key(base, ns, id))
  if has_checkpoint(fields) then return {id, fields} end
end
-- The pointer is missing or its checkpoint expired or was deleted: find the newest left.
id = resolve_latest(base, ns)
if not id then return nil end
return {id, redis.call('HGETALL', cp_key(base, ns, id))}

-- Forget up to ARGV[1] items whose TTL passed: their hashes expired on their own, their
-- index entries are dropped here. Sent before a batch's writes.
-- KEYS[1] store base. Returns how many were forgotten.
local base, cap = KEYS[1], tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', expiry_key(base), '-inf', ms(now_ms()), 'LIMIT', 0, cap)
local forgotten = 0
for _, member in ipairs(expired) do
  if redis.call('EXISTS', doc_key(base, member)) == 0 then
    unindex(base, member)
    forgotten = forgotten + 1
  end
end
return forgotten

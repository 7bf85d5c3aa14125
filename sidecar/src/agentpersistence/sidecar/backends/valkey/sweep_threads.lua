-- Forget threads whose keys all expired (TTL only). KEYS[1] the thread index, KEYS[2] the
-- thread expiry index. ARGV: now (unix seconds), most threads to forget.
-- A put raises the thread's expiry before re-adding it to the index, so a thread written
-- concurrently is never forgotten.
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #gone, 200 do
  local batch = {unpack(gone, i, math.min(i + 199, #gone))}
  redis.call('ZREM', KEYS[1], unpack(batch))
  redis.call('ZREM', KEYS[2], unpack(batch))
end
return #gone

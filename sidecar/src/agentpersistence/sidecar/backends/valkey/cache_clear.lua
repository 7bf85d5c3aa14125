-- Drop every entry of one cache namespace (all its keys share one hash tag, so one slot).
-- KEYS[1] the namespace's entry index (ZSET of escaped keys). ARGV[1] the namespace's base
-- "P:{c:N}:". Entries are unlinked 500 at a time. Returns how many were indexed.
local index, base = KEYS[1], ARGV[1]
local members = redis.call('ZRANGE', index, 0, -1)
local batch = {}
for _, member in ipairs(members) do
  batch[#batch + 1] = base .. 'e:' .. member
  if #batch == 500 then
    redis.call('UNLINK', unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('UNLINK', unpack(batch)) end
redis.call('DEL', index)
return #members

-- Walk the items under a namespace prefix in search order (updated_at desc, namespace, key),
-- from a rank of the prefix's sorted set: searches without a query, and exact searches.
-- KEYS[1] store base. ARGV: prefix set key, start rank, skip, want, budget, flags.
-- Skips `skip` live items, returns up to `want`, examines at most `budget` members. Flags:
-- 'v' adds vector blobs, 'n' passes over items with vectors, 'r' refreshes returned items.
-- Members whose item is gone are unindexed. Returns {more (0 = the set is exhausted),
-- next start rank, skip left, {items as store_read's...}}.
local base, zkey = KEYS[1], ARGV[1]
local rank, skip = tonumber(ARGV[2]), tonumber(ARGV[3])
local want, budget, flags = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local with_vectors = string.find(flags, 'v', 1, true) ~= nil
local novec_only = string.find(flags, 'n', 1, true) ~= nil
local refresh = string.find(flags, 'r', 1, true) ~= nil
local now = now_ms()

local items, dead, examined, more = {}, {}, 0, 1
while #items < want and examined < budget do
  local size = math.min(100, budget - examined)
  local chunk = redis.call('ZRANGE', zkey, rank, rank + size - 1)
  local consumed = 0
  for _, member in ipairs(chunk) do
    consumed = consumed + 1
    examined = examined + 1
    rank = rank + 1
    local fields = read_fields(base, member)
    if not fields then
      dead[#dead + 1] = member
    elseif novec_only and (tonumber(fields[NVEC]) or 0) > 0 then
      -- an item with vectors: not wanted
    elseif skip > 0 then
      skip = skip - 1
    else
      if refresh then touch(base, member, fields, now) end
      if with_vectors then add_vectors(base, member, fields) end
      items[#items + 1] = fields
      if #items >= want then break end
    end
  end
  if consumed == #chunk and #chunk < size then
    more = 0
    break
  end
end
for _, member in ipairs(dead) do unindex(base, member) end
return {more, rank - #dead, skip, items}

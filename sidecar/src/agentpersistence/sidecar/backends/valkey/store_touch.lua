-- Extend the TTL of items a search returned (refresh_ttl), after the search's reads.
-- KEYS[1] store base. ARGV: members... Items without a TTL or gone are left alone.
local base = KEYS[1]
local now = now_ms()
for i = 1, #ARGV do
  local fields = read_fields(base, ARGV[i])
  if fields then touch(base, ARGV[i], fields, now) end
end
return #ARGV

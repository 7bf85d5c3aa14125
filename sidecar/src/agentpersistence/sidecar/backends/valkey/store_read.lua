-- Items by member: the gets of a batch, and the candidates a vector search found.
-- KEYS[1] store base. ARGV: refresh ('1' extends TTLs), with vectors ('1'), members...
-- Returns per member false (no such live item) or {m, value, created_at, updated_at, ttl,
-- nvec, vector blobs (with vectors)...}.
local base, refresh, with_vectors = KEYS[1], ARGV[1] == '1', ARGV[2] == '1'
local now = now_ms()
local out = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  local fields = read_fields(base, member)
  if fields then
    if refresh then touch(base, member, fields, now) end
    if with_vectors then add_vectors(base, member, fields) end
  end
  out[#out + 1] = fields
end
return out

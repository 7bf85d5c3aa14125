-- Read a thread's checkpoints with their writes, for copying, in ascending (ns, id) order.
-- KEYS[1] thread base. ARGV: after ns (opt), after id (opt), max records, max bytes, max scanned.
-- Returns {more (0/1), last ns, last id, {ns, id, fields}...}; continue after (last ns, last id).
local base = KEYS[1]
local after_ns, after_id = opt(ARGV[1]), opt(ARGV[2])
local max_records, max_bytes, left = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {0, '', ''}
local bytes = 0

local function export_namespace(ns)
  local lo = '-'
  if ns == after_ns and after_id then lo = '(' .. after_id end
  while true do
    local batch = redis.call('ZRANGEBYLEX', ids_key(base, ns), lo, '+', 'LIMIT', 0, 100)
    for _, id in ipairs(batch) do
      local fields = redis.call('HGETALL', cp_key(base, ns, id))
      if has_checkpoint(fields) then
        out[#out + 1] = {ns, id, fields}
        for _, v in ipairs(fields) do bytes = bytes + #v end
      end
      out[2], out[3], left = ns, id, left - 1
      if #out - 3 >= max_records or bytes >= max_bytes or left <= 0 then
        out[1] = 1
        return true
      end
    end
    if #batch < 100 then return nil end
    lo = '(' .. batch[#batch]
  end
end

each_namespace(base, after_ns, export_namespace)
return out

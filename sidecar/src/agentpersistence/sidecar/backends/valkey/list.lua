-- One thread's part of a list page, in the shared order: namespaces ascending, ids descending.
-- KEYS[1] thread base. ARGV: ns (opt; nil = every namespace), after ns (opt), after id (opt),
-- checkpoint id (opt), before id (opt), filter JSON (opt), records wanted, most ids to examine,
-- namespace bound (opt; only namespaces below it, for a listing that starts at `after ns`),
-- bytes wanted (the page ends once the records found carry this many bytes of field values,
-- at least one record in).
-- Returns {status, last ns, last id, {ns, id, fields}...}. status: 'full' when the records
-- wanted were found and another checkpoint follows; 'done' when the thread has nothing more;
-- 'budget' when the examined ids ran out: continue after (last ns, last id), the last examined.
-- The filter here may let through more than rules.metadata_matches (it never drops a match);
-- the sidecar applies the exact rule to what comes back.
local base = KEYS[1]
local only_ns, after_ns, after_id = opt(ARGV[1]), opt(ARGV[2]), opt(ARGV[3])
local only_id, before, filter_json = opt(ARGV[4]), opt(ARGV[5]), opt(ARGV[6])
local wanted, left, below = tonumber(ARGV[7]), tonumber(ARGV[8]), opt(ARGV[9] or '')
local bytes_left = tonumber(ARGV[10])
local filter = filter_json and cjson.decode(filter_json)
local out = {'done', '', ''}
local found = 0

-- Equality as Python's == on JSON values (bool == number, {} == [] let through).
local function same(a, b)
  if a == b then return true end
  local ta, tb = type(a), type(b)
  if ta == 'boolean' and tb == 'number' then return (a and 1 or 0) == b end
  if ta == 'number' and tb == 'boolean' then return a == (b and 1 or 0) end
  if ta ~= 'table' or tb ~= 'table' then return false end
  for k, v in pairs(a) do
    if b[k] == nil or not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function may_match(metadata)
  local ok, meta = pcall(cjson.decode, metadata)
  if not ok or type(meta) ~= 'table' then return true end
  for k, v in pairs(filter) do
    local m = meta[k]
    if m == nil then m = cjson.null end
    if not same(m, v) then return false end
  end
  return true
end

-- Examine one candidate id; a non-nil result stops the listing with that status.
local function visit(ns, id)
  if left <= 0 then return 'budget' end
  left = left - 1
  local key = cp_key(base, ns, id)
  local alive = nil
  if found == wanted or (found > 0 and bytes_left <= 0) then
    if redis.call('HEXISTS', key, 'checkpoint') == 1 then return 'full' end
  else
    local metadata = filter and redis.call('HGET', key, 'metadata')
    if metadata then alive = true end
    if not filter or (metadata and may_match(metadata)) then
      local fields = redis.call('HGETALL', key)
      alive = #fields > 0
      if has_checkpoint(fields) then
        out[#out + 1] = {ns, id, fields}
        found = found + 1
        for i = 2, #fields, 2 do bytes_left = bytes_left - #fields[i] end
      end
    end
  end
  if alive == nil then alive = redis.call('EXISTS', key) == 1 end
  if not alive then redis.call('ZREM', ids_key(base, ns), id) end
  out[2], out[3] = ns, id
  return nil
end

local function list_namespace(ns)
  if below and not lex_less(ns, below) then return 'done' end
  local hi = nil
  if ns == after_ns then hi = after_id end
  if before and (not hi or lex_less(before, hi)) then hi = before end
  local ids = ids_key(base, ns)
  if only_id then
    if hi and not lex_less(only_id, hi) then return nil end
    if not redis.call('ZSCORE', ids, only_id) then return nil end
    return visit(ns, only_id)
  end
  local upper = hi and ('(' .. hi) or '+'
  while true do
    local batch = redis.call('ZREVRANGEBYLEX', ids, upper, '-', 'LIMIT', 0, 100)
    for _, id in ipairs(batch) do
      local status = visit(ns, id)
      if status then return status end
    end
    if #batch < 100 then return nil end
    upper = '(' .. batch[#batch]
  end
end

local status
if only_ns then
  local skip = after_ns and lex_less(only_ns, after_ns)
  if not skip and redis.call('ZSCORE', ns_key(base), only_ns) then
    status = list_namespace(only_ns)
  end
else
  status = each_namespace(base, after_ns, list_namespace)
end
out[1] = status or 'done'
return out

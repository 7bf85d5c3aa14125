-- Helpers shared by the scripts; prepended after keys.lua.

-- An optional argument: '' is nil, anything else is '=' followed by the value.
local function opt(s)
  if s == '' then return nil end
  return string.sub(s, 2)
end

-- Byte-wise a < b, as ZSETs order members (Lua's own < follows the server's locale).
local function lex_less(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- HSET the pairs flat[first..last], a few hundred arguments per call (Lua's stack is small).
local function hset_flat(key, flat, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 399, last)
    redis.call('HSET', key, unpack(flat, i, j))
    i = j + 1
  end
end

-- Whether a flat HGETALL reply holds a stored checkpoint (not only pending writes).
local function has_checkpoint(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'checkpoint' then return true end
  end
  return false
end

local function expire_all(ttl, ...)
  if ttl <= 0 then return end
  for _, key in ipairs({...}) do redis.call('EXPIRE', key, ttl) end
end

-- Record the namespace's newest checkpoint id if `id` is newer than the stored one.
local function raise_latest(base, ns, id)
  local current = redis.call('HGET', latest_key(base), ns)
  if not current or lex_less(current, id) then
    redis.call('HSET', latest_key(base), ns, id)
  end
end

-- Find the newest id of `ns` that has a checkpoint, dropping index entries whose hash is gone
-- (expired), and store it as the namespace's latest. Without one, forget the pointer, and the
-- namespace too when nothing of it is left.
local function resolve_latest(base, ns)
  local ids = ids_key(base, ns)
  local hi = '+'
  while true do
    local batch = redis.call('ZREVRANGEBYLEX', ids, hi, '-', 'LIMIT', 0, 50)
    if #batch == 0 then break end
    for _, id in ipairs(batch) do
      local key = cp_key(base, ns, id)
      if redis.call('HEXISTS', key, 'checkpoint') == 1 then
        redis.call('HSET', latest_key(base), ns, id)
        return id
      end
      if redis.call('EXISTS', key) == 0 then redis.call('ZREM', ids, id) end
    end
    hi = '(' .. batch[#batch]
  end
  redis.call('HDEL', latest_key(base), ns)
  if redis.call('EXISTS', ids) == 0 then redis.call('ZREM', ns_key(base), ns) end
  return nil
end

-- The namespace's newest checkpoint id: the pointer when it is still valid, else resolved.
local function latest_id(base, ns)
  local id = redis.call('HGET', latest_key(base), ns)
  if id and redis.call('HEXISTS', cp_key(base, ns, id), 'checkpoint') == 1 then return id end
  return resolve_latest(base, ns)
end

-- Delete one checkpoint (with its writes); append {ns, id, run} to `out` if a run wrote it.
local function drop(base, ns, id, out)
  local key = cp_key(base, ns, id)
  local run = redis.call('HGET', key, 'run')
  if run then
    out[#out + 1] = ns
    out[#out + 1] = id
    out[#out + 1] = run
  end
  redis.call('UNLINK', key)
  redis.call('ZREM', ids_key(base, ns), id)
end

-- Namespaces of the thread from `first` (inclusive; nil = the first) in ascending order,
-- read in batches: calls fn(ns) until it returns a non-nil value, which is returned.
local function each_namespace(base, first, fn)
  local lo = first and ('[' .. first) or '-'
  while true do
    local batch = redis.call('ZRANGEBYLEX', ns_key(base), lo, '+', 'LIMIT', 0, 100)
    for _, ns in ipairs(batch) do
      local result = fn(ns)
      if result ~= nil then return result end
    end
    if #batch < 100 then return nil end
    lo = '(' .. batch[#batch]
  end
end

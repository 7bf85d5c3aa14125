-- The store's key layout, mirroring store_schema.py (read its docstring), and the helpers
-- every store script shares; prepended to each. KEYS[1] is the store's hash-tagged base
-- "P:{s}:", so every key built here lives in the store's cluster slot.

local function esc(s)
  return (string.gsub(s, '[%%{}:]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

-- The labels and key of an item member 'l1\0l2\0\0key'.
local function split_member(member)
  local labels, i = {}, 1
  while true do
    local j = string.find(member, '\0', i, true)
    if not j or j == i then return labels, string.sub(member, i + 1) end
    labels[#labels + 1] = string.sub(member, i, j - 1)
    i = j + 1
  end
end

local function ns_member(labels) return table.concat(labels, '\0') .. '\0' end

local function ns_path(labels, depth)
  local parts = {}
  for d = 1, depth do parts[d] = esc(labels[d]) .. ':' end
  return table.concat(parts)
end

local function path_of(member) return (string.gsub(esc(member), '%z', ':')) end

local function doc_key(base, member) return base .. 'd:' .. path_of(member) end
local function vec_key(base, member, i) return base .. 'v:' .. path_of(member) .. ':' .. i end
local function prefix_key(base, labels, depth) return base .. 'p:' .. ns_path(labels, depth) end
local function items_key(base, labels) return base .. 'n:' .. ns_path(labels, #labels) end
local function registry_key(base) return base .. 'ns' end
local function expiry_key(base) return base .. 'exp' end

local ITEM_FIELDS = {'m', 'value', 'created_at', 'updated_at', 'ttl', 'nvec'}
local NVEC, TTL = 6, 5

-- Milliseconds since the epoch, by the server's clock (the clock PEXPIREAT follows).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n) return string.format('%d', n) end

-- The item's fields (ITEM_FIELDS), or false if it does not exist (never put, deleted, expired).
local function read_fields(base, member)
  local found = redis.call('HMGET', doc_key(base, member), unpack(ITEM_FIELDS))
  if not found[1] then return false end
  return found
end

-- Append the item's vector blobs to its fields.
local function add_vectors(base, member, fields)
  for i = 0, (tonumber(fields[NVEC]) or 0) - 1 do
    fields[#fields + 1] = redis.call('HGET', vec_key(base, member, i), 'vec') or ''
  end
  return fields
end

-- Expire the item (its hash and vector hashes) ttl ms after now, and index that expiry.
local function expire_item(base, member, labels, nvec, ttl, now)
  local at = ms(now + ttl)
  redis.call('PEXPIREAT', doc_key(base, member), at)
  for i = 0, nvec - 1 do redis.call('PEXPIREAT', vec_key(base, member, i), at) end
  redis.call('ZADD', items_key(base, labels), at, member)
  redis.call('ZADD', expiry_key(base), at, member)
end

-- Extend the TTL of an item read with read_fields (refresh_ttl); no-op without a TTL.
local function touch(base, member, fields, now)
  local ttl = tonumber(fields[TTL]) or 0
  if ttl > 0 then
    expire_item(base, member, (split_member(member)), tonumber(fields[NVEC]) or 0, ttl, now)
  end
end

-- Drop the index entries of an item that is gone (deleted or expired).
local function unindex(base, member)
  local labels = split_member(member)
  for depth = 0, #labels do redis.call('ZREM', prefix_key(base, labels, depth), member) end
  local items = items_key(base, labels)
  redis.call('ZREM', items, member)
  redis.call('ZREM', expiry_key(base), member)
  if redis.call('ZCARD', items) == 0 then
    redis.call('ZREM', registry_key(base), ns_member(labels))
  end
end

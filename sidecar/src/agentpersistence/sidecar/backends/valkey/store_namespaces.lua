-- Namespaces holding a live item, from a lex range of the namespace index: list_namespaces.
-- KEYS[1] store base. ARGV: min, max (ZRANGEBYLEX bounds), budget (members examined).
-- A namespace whose items all expired is forgotten on the way, with its items' index
-- entries. Returns {more, last member examined, {live namespace members...}}.
local base, min, max, budget = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local found = redis.call('ZRANGEBYLEX', registry_key(base), min, max, 'LIMIT', 0, budget)
local live = {}
for _, nsm in ipairs(found) do
  local labels = split_member(nsm .. '\0')
  local items = items_key(base, labels)
  if redis.call('ZCOUNT', items, '(' .. ms(now), '+inf') > 0 then
    live[#live + 1] = nsm
  else
    for _, member in ipairs(redis.call('ZRANGE', items, 0, -1)) do unindex(base, member) end
    redis.call('DEL', items)
    redis.call('ZREM', registry_key(base), nsm)
  end
end
local more = 0
if #found == budget then more = 1 end
return {more, found[#found] or '', live}

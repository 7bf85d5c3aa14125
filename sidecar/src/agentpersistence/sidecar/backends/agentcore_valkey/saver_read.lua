-- Read checkpoints that langgraph-checkpoint-aws's AgentCoreValkeySaver wrote (standalone
-- servers only: its keys carry no hash tag). KEYS[1] its session list of one namespace,
-- KEYS[2] and KEYS[3] its checkpoint and writes key prefixes ("agentcore:checkpoint:S:A:N:").
-- ARGV: 'one' and an id, 'latest', or 'all'. Returns {{id, checkpoint JSON, {write JSON...}}...},
-- newest put first, each id once.
local mode = ARGV[1]
local ids
if mode == 'one' then
  ids = {ARGV[2]}
elseif mode == 'latest' then
  ids = redis.call('LRANGE', KEYS[1], 0, 0)
else
  ids = redis.call('LRANGE', KEYS[1], 0, -1)
end
local out, seen = {}, {}
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    local checkpoint = redis.call('GET', KEYS[2] .. id)
    if checkpoint then
      out[#out + 1] = {id, checkpoint, redis.call('LRANGE', KEYS[3] .. id, 0, -1)}
    end
  end
end
return out

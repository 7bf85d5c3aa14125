-- Delete the listed checkpoints (with their writes) of one thread that one of the given runs
-- wrote; others (re-put by another run since) stay. KEYS[1] thread base.
-- ARGV: number of runs, run ids..., then (ns, id) pairs.
local base, nruns = KEYS[1], tonumber(ARGV[1])
local runs, touched, out = {}, {}, {}
for i = 2, nruns + 1 do runs[ARGV[i]] = true end

for i = nruns + 2, #ARGV, 2 do
  local ns, id = ARGV[i], ARGV[i + 1]
  local run = redis.call('HGET', cp_key(base, ns, id), 'run')
  if run and runs[run] then
    drop(base, ns, id, out)
    touched[ns] = true
  end
end
for ns in pairs(touched) do latest_id(base, ns) end
return #out / 3

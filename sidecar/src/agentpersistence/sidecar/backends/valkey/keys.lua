-- The per-thread key layout, mirroring schema.py (read its docstring); prepended to every
-- script. KEYS[1] of a thread script is the thread's hash-tagged base, "P:{t:T}:", so every
-- key built here lives in the thread's cluster slot.

local function esc(s)
  return (string.gsub(s, '[%%{}:]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

local function ns_key(base) return base .. 'ns' end
local function latest_key(base) return base .. 'latest' end
local function ids_key(base, ns) return base .. 'ids:' .. esc(ns) end
local function cp_key(base, ns, id) return base .. 'cp:' .. esc(ns) .. ':' .. esc(id) end

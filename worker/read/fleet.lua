-- A fleet read's first pass: the server's TIME, then per service its value (or [type,
-- length] when missing, of another type, empty or oversized) and its most recent nodes.
-- KEYS: (latest, nodes) per service. ARGV[1] value cap in bytes, ARGV[2] nodes per service.
local out = {redis.call('TIME')}
local cap = tonumber(ARGV[1])
local limit = tonumber(ARGV[2]) - 1
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local v = redis.pcall('GETRANGE', key, 0, cap)
  if type(v) == 'string' and #v > 0 and #v <= cap then
    out[i + 1] = v
  else
    local kind = redis.call('TYPE', key)
    if type(kind) == 'table' then kind = kind['ok'] end
    local n = 0
    if kind == 'string' then n = redis.call('STRLEN', key) end
    out[i + 1] = {kind, n}
  end
  local nodes = redis.pcall('ZREVRANGE', KEYS[i + 1], 0, limit, 'WITHSCORES')
  if type(nodes) ~= 'table' or nodes['err'] then nodes = {} end
  out[i + 2] = nodes
end
return out

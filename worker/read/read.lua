-- Returns the server's TIME, then per service: the value (or [type, length] when missing,
-- of another type, empty or oversized), beat's marker and the worker's discard note (with
-- four keys a service), and the most recent worker nodes (flat: node, ts_ms, ...).
-- KEYS: (latest, beat marker, discard note, nodes) per service, or (latest, nodes) for a
-- fleet's first pass. ARGV[1] value cap, ARGV[2] note cap, ARGV[3] '1' to read the notes
-- ('0': they come back empty), ARGV[4] most recent nodes per service, ARGV[5] keys per
-- service: 4 (the default) or 2.
local t = redis.call('TIME')
local out = {t}
local cap = tonumber(ARGV[1])
local stride = tonumber(ARGV[5]) or 4
for i = 1, #KEYS, stride do
  -- One GETRANGE per key in the common case; the rare cases say what the key holds.
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
  for j = 1, stride - 2 do
    local m = ''
    if ARGV[3] == '1' then m = redis.pcall('GETRANGE', KEYS[i + j], 0, tonumber(ARGV[2]) - 1) end
    if type(m) ~= 'string' then m = '' end
    out[i + j + 1] = m
  end
  local nodes = redis.pcall('ZREVRANGE', KEYS[i + stride - 1], 0, tonumber(ARGV[4]) - 1,
                            'WITHSCORES')
  if type(nodes) ~= 'table' or nodes['err'] then nodes = {} end
  out[i + stride] = nodes
end
return out

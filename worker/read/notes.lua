-- Beat's markers and the discard notes of the services a fleet read found not fresh.
-- KEYS: (beat marker, discard note) per service. ARGV[1] note cap in bytes.
-- Returns the first ARGV[1] bytes of each key, '' when missing or not a string.
local cap = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local m = redis.pcall('GETRANGE', KEYS[i], 0, cap - 1)
  if type(m) ~= 'string' then m = '' end
  out[i] = m
end
return out

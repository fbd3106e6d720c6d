-- The entries' silences of one service, bounded (a hash only `silence --entry` writes).
-- KEYS[1] the entry_silence hash  ARGV[1] the most fields  ARGV[2] the longest name
-- ARGV[3] the longest value  ARGV[4] (optional) the one entry asked for.
-- Returns a flat list name, value: only fields whose name and value are within the
-- bounds (HSTRLEN before HGET: a longer value is never read); none when the hash holds
-- more fields than ARGV[1] (no beat app has that many entries). Read-only.
local longest_name, longest = tonumber(ARGV[2]), tonumber(ARGV[3])
local names
if ARGV[4] then
  names = {ARGV[4]}
elseif redis.call('HLEN', KEYS[1]) > tonumber(ARGV[1]) then
  return {}
else
  names = redis.call('HKEYS', KEYS[1])
end
local out = {}
for _, name in ipairs(names) do
  local size = redis.call('HSTRLEN', KEYS[1], name)
  if #name <= longest_name and size > 0 and size <= longest then
    out[#out + 1] = name
    out[#out + 1] = redis.call('HGET', KEYS[1], name)
  end
end
return out

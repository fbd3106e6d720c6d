-- The monitors' record of each service, for uptime: the record's state, first_ms, at_ms
-- and diagnosis (HMGET), the
-- incident stream's entries from ARGV[1] on (XRANGE), and the silence (GET, or false).
-- KEYS: (observed, incidents, silence) per service. Read-only; at most 999 keys a call.
local out = {}
for i = 1, #KEYS, 3 do
  out[#out + 1] = redis.call('HMGET', KEYS[i], 'state', 'first_ms', 'at_ms', 'diagnosis')
  out[#out + 1] = redis.call('XRANGE', KEYS[i + 1], ARGV[1], '+')
  out[#out + 1] = redis.call('GET', KEYS[i + 2])
end
return out

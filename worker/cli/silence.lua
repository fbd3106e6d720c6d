-- Silence one service until a time on the Redis clock: the key expires then.
-- KEYS[1] the silence  ARGV[1] its length, ms  ARGV[2] the reason
-- Returns the end of the silence, epoch ms on the Redis clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local value = cjson.encode({until_ms = now + ms, since_ms = now, reason = ARGV[2]})
redis.call('SET', KEYS[1], value, 'PX', ms)
return now + ms

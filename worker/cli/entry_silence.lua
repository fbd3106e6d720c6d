-- Silence one beat entry of a service until a time on the Redis clock.
-- KEYS[1] the service's entry silences (hash: entry name -> JSON)
-- ARGV[1] the silence's length, ms  ARGV[2] the reason  ARGV[3] the entry's name
-- A silence that has ended is dropped here; the hash expires when its last silence ends.
-- Returns the end of the silence, epoch ms on the Redis clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local value = cjson.encode({until_ms = now + ms, since_ms = now, reason = ARGV[2]})
redis.call('HSET', KEYS[1], ARGV[3], value)
local last = now + ms
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, s = pcall(cjson.decode, all[i + 1])
  local ends = ok and type(s) == 'table' and tonumber(s.until_ms) or nil
  if ends == nil or ends <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif ends > last then
    last = ends
  end
end
redis.call('PEXPIRE', KEYS[1], last - now)
return now + ms

-- A service's summary on a Redis Cluster, where it lives in another slot than the
-- service's keys and is written after the publish script: never backwards, so that two
-- writers racing leave the newer. Mirrors publish.lua: a stored ts_ms further ahead than
-- the future tolerance is not ours to keep, and is replaced.
-- KEYS[1] summary shard  ARGV[1] service  ARGV[2] summary  ARGV[3] its ts_ms
-- ARGV[4] future tolerance ms.  Returns 1 if written, 0 if a newer one is kept.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if type(old) == 'string' then
  local ts = string.match(old, '^{"seq":%d+,"ts_ms":(%d+),')
  if ts and #ts <= 15 then
    ts = tonumber(ts)
    local new = tonumber(ARGV[3])
    if ts > new and ts <= new + tonumber(ARGV[4]) then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1

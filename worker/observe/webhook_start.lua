-- One webhook's cursor, set on first use to the outbox's last entry: a webhook new to the
-- store is told what happens from now on, not the notifications already queued.
-- KEYS[1] the cursor  KEYS[2] the outbox  ARGV[1] the cursor's TTL, ms
-- Returns the cursor (an existing one is kept as it is).
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
redis.call('SET', KEYS[1], id, 'NX', 'PX', ARGV[1])
return redis.call('GET', KEYS[1])

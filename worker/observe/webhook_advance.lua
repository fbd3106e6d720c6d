-- Move one webhook's cursor to the entry just delivered, only while holding the lease: a
-- holder that lost it (paused beyond its lease) never moves the cursor of the next one.
-- KEYS[1] the lease  KEYS[2] the cursor
-- ARGV[1] this monitor's id  ARGV[2] the outbox entry delivered  ARGV[3] the cursor's TTL, ms
-- Returns 1 when moved, 0 when the lease is another monitor's (or gone).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1

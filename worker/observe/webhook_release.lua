-- Give one webhook's delivery lease up, if this monitor still holds it (a stopping monitor
-- hands over at once instead of after the lease's expiry).
-- KEYS[1] the lease  ARGV[1] this monitor's id
-- Returns 1 when released, 0 when the lease was another monitor's (or gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0

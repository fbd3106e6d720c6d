-- Take or renew one webhook's delivery lease: one monitor delivers at a time.
-- KEYS[1] the lease  ARGV[1] this monitor's id  ARGV[2] the lease length, ms
-- Returns 1 when this monitor holds the lease (taken or renewed), 0 when another does.
-- The lease expires on the Redis clock unless renewed: a holder that dies hands over.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0

-- One node heartbeat: this worker node ran a broadcast heartbeat, on this server's clock.
-- KEYS[1] the service's nodes (sorted set: member = node name, score = last ts_ms)
-- ARGV[1] node name  ARGV[2] node retention ms
-- ARGV[3] publish time on the Redis clock ('' = unknown)  ARGV[4] expiry ms ('' = none)
-- Returns {written (1/0), now_ms}: 0 when the message waited longer than its expiry (a
-- backlog must not make a node look alive). Never moves a node backwards (ZADD GT); nodes
-- silent for longer than the retention are pruned on every write, and the key expires
-- with the last node.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] ~= '' and ARGV[4] ~= '' and now - tonumber(ARGV[3]) > tonumber(ARGV[4]) then
  return {0, now}
end
local kind = redis.call('TYPE', KEYS[1])
if type(kind) == 'table' then kind = kind['ok'] end
if kind ~= 'zset' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
redis.call('ZADD', KEYS[1], 'GT', string.format('%d', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%d', now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, now}

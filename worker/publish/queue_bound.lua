-- Keep at most ARGV[1] heartbeats across one queue's lists (KEYS: the queue, then its
-- priority sub-queues), dropping the oldest: kombu pushes on the left and pops on the
-- right. Returns the depth left.
local max = tonumber(ARGV[1])
local depth = 0
for i = 1, #KEYS do
  local n = redis.call('LLEN', KEYS[i])
  if depth + n > max then
    n = max - depth
    if n > 0 then redis.call('LTRIM', KEYS[i], 0, n - 1) else redis.call('DEL', KEYS[i]) end
  end
  depth = depth + n
end
return depth

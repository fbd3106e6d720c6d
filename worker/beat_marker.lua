-- Beat's marker: one publish of the heartbeat task, on this server's clock.
-- KEYS[1] marker  KEYS[2..] the broker's queue lists (only when broker and store are one
-- Redis; their summed LLEN is the queue depth right after this publish)
-- ARGV[1] interval ms  ARGV[2] retention ms  ARGV[3] JSON object with beat's own fields
-- Returns {now_ms, queue depth or -1}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local depth = -1
if #KEYS > 1 then
  depth = 0
  for i = 2, #KEYS do
    local n = redis.pcall('LLEN', KEYS[i])
    if type(n) == 'number' then depth = depth + n end
  end
end
local seq = 1
local old = redis.pcall('GET', KEYS[1])
if type(old) == 'string' then
  local old_seq = string.match(old, '^{"published_at_ms":%d+,"next_due_ms":%d+,"seq":(%d+),')
  if old_seq and #old_seq <= 15 then seq = tonumber(old_seq) + 1 end
end
local depth_json = 'null'
if depth >= 0 then depth_json = string.format('%d', depth) end
local value = string.format('{"published_at_ms":%d,"next_due_ms":%d,"seq":%d,"queue_depth":%s,',
  now, now + tonumber(ARGV[1]), seq, depth_json) .. string.sub(ARGV[3], 2)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {now, depth}

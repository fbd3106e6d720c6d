-- Move one webhook's cursor forward to the entry just delivered; never back.
-- KEYS[1] the cursor  ARGV[1] the outbox entry delivered  ARGV[2] the cursor's TTL, ms
-- Returns 1 when moved, 0 when the cursor is already at or after the entry.
-- Whoever delivered it moves it, lease or not: a POST that outlasted its sender's lease
-- was delivered all the same (the next holder may post it again, at least once), and a
-- receiver slower than the lease must not stall the outbox on its first entry. A late
-- sender finds the cursor further on and leaves it: it never moves back, so nothing the
-- next holder delivered is posted again.
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local current = redis.call('GET', KEYS[1])
if current then
  local at_ms, at_seq = parts(current)
  local ms, seq = parts(ARGV[1])
  if at_ms and (at_ms > ms or (at_ms == ms and at_seq >= seq)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1

-- Beat's marker: one publish of the heartbeat task, on this server's clock.
-- KEYS[1] marker
-- ARGV[1] interval ms  ARGV[2] retention ms  ARGV[3] JSON object with beat's own fields
-- ARGV[4] this beat's id  ARGV[5] this beat's previous publish ms (0: none yet)
-- ARGV[6] how long a second beat stays flagged after it was last seen, ms
-- ARGV[7] '' for a publish; for a publish the broker refused, its error (printable ASCII
--         without quotes or backslashes): the last publish stays as it was, the failure
--         is added as publish_failed_at_ms and publish_error
-- ARGV[8] the queue depth right after this publish (beat read it on a Redis broker), or -1
-- Returns {now_ms, queue depth or -1}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local me = ARGV[4]
local my_last = tonumber(ARGV[5])
local old = redis.pcall('GET', KEYS[1])
if ARGV[7] ~= '' then
  local note = string.format('"publish_failed_at_ms":%d,"publish_error":"%s",', now, ARGV[7])
  local value = nil
  if type(old) == 'string' and #old <= 4096 then
    local head = string.match(old, '^{"published_at_ms":%d+,"next_due_ms":%d+,"seq":%d+,' ..
      '"queue_depth":[%dnul]+,"since_ms":%d+,"beat_id":"[%w._:-]+",')
    local tail = string.match(old, '"other_beat":.*$')
    if head and tail then value = head .. note .. tail end
  end
  if not value then  -- no publish recorded yet: a marker of the failure alone
    value = string.format('{"published_at_ms":null,"next_due_ms":null,"seq":0,' ..
      '"queue_depth":null,"since_ms":null,"beat_id":"%s",', me) .. note ..
      '"other_beat":null,' .. string.sub(ARGV[3], 2)
  end
  redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
  return {now, -1}
end
local depth = tonumber(ARGV[8]) or -1
local seq, since = 1, now
local other, other_seen = nil, nil
if type(old) == 'string' then
  local old_pub, old_seq, old_since, old_id = string.match(old,
    '^{"published_at_ms":(%d+),"next_due_ms":%d+,"seq":(%d+),"queue_depth":[%dnul]+,' ..
    '"since_ms":(%d+),"beat_id":"([%w._:-]+)",')
  if old_seq and #old_seq <= 15 and #old_pub <= 15 and #old_since <= 15 then
    old_pub = tonumber(old_pub)
    seq = tonumber(old_seq) + 1
    -- Beat has published without a gap of two intervals: the run goes on.
    if now - old_pub <= 2 * interval then since = math.min(tonumber(old_since), now) end
    if old_id ~= me and my_last > 0 and old_pub >= my_last then
      -- Another beat wrote the marker after this one last did (the same millisecond
      -- included): two beats are running.
      other, other_seen = old_id, now
    else
      local o_id, o_seen = string.match(old, '"other_beat":{"beat_id":"([%w._:-]+)",' ..
        '"seen_at_ms":(%d+)}')
      if o_id and o_id ~= me and #o_seen <= 15
          and now - tonumber(o_seen) <= tonumber(ARGV[6]) then
        other, other_seen = o_id, tonumber(o_seen)
      end
    end
  end
end
local depth_json = 'null'
if depth >= 0 then depth_json = string.format('%d', depth) end
local other_json = 'null'
if other then
  other_json = string.format('{"beat_id":"%s","seen_at_ms":%d}', other, other_seen)
end
local value = string.format('{"published_at_ms":%d,"next_due_ms":%d,"seq":%d,' ..
  '"queue_depth":%s,"since_ms":%d,"beat_id":"%s","other_beat":%s,',
  now, now + interval, seq, depth_json, since, me, other_json) .. string.sub(ARGV[3], 2)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {now, depth}

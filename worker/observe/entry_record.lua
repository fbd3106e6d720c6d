-- Records the judged state of each beat entry of one service; a change of verdict becomes
-- one entry of the service's entry incident stream and, unless the entry or the service is
-- silenced, one notification. Atomic per call, so however many monitors run, an entry's
-- transition is recorded and notified exactly once: the second monitor to see it finds it
-- recorded, and a judgement older than the entry's last recorded change is ignored.
-- Verdicts: ok is up; running and pending are no verdict (the one recorded stands: a
-- failed entry whose next run starts is still failed until that run ends; an ok entry
-- that runs every second is never news); every other state is its own verdict.
-- KEYS[1] the entries' record (hash: name -> JSON), KEYS[2] the entry incident stream,
-- KEYS[3] the service's silence, KEYS[4] the entries' silences (hash: name -> JSON with
-- until_ms), KEYS[5] the outbox when ARGV[5] is '1'.
-- ARGV[1] stream cap, ARGV[2] TTL of the record and the stream (ms), ARGV[3] outbox cap,
-- ARGV[4] the monitor's id, ARGV[5] '1': add notifications to the outbox here ('0':
-- return them), ARGV[6] the service, ARGV[7] the Redis clock of the judgement (ms),
-- ARGV[8] '1' when the judgements cover every entry of the service (records of entries
-- gone are then dropped), then one JSON judgement per entry: entry, to, diagnosis,
-- reason, at (when the state began, ms).
-- Returns per entry: the recorded state, the new incident's id or '', the notification
-- (JSON) or ''.
local obs, inc, sil, esil = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local outbox = nil
if ARGV[5] == '1' then outbox = KEYS[5] end
local maxlen, ttl, outmax, monitor = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local service, seen, complete = ARGV[6], tonumber(ARGV[7]), ARGV[8] == '1'
local service_silenced = redis.call('EXISTS', sil) == 1

local function verdict(state)
  if state == 'ok' or state == 'running' or state == 'pending' then return 'up' end
  return state
end

local function decode(raw)
  if not raw then return nil end
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then return value end
  return nil
end

local function entry_silenced(name)
  local s = decode(redis.call('HGET', esil, name))
  return s ~= nil and tonumber(s.until_ms) ~= nil and tonumber(s.until_ms) > seen
end

local out = {}
local names = {}
local wrote = false
for i = 9, #ARGV do
  local j = cjson.decode(ARGV[i])
  local name = j.entry
  names[name] = true
  local r = decode(redis.call('HGET', obs, name))
  if r and tonumber(r.seen_ms) and seen < tonumber(r.seen_ms) then
    -- Judged before the last recorded change (a slower monitor): it says nothing new.
    out[#out + 1] = {r.state or '', '', ''}
  else
    local changed, recorded = false, ''
    local at = tonumber(j.at) or seen
    if r == nil then
      -- The first judgement of this entry: where its record starts, not a transition.
      if at > seen then at = seen end
      r = {state = j.to, at_ms = at, seen_ms = seen, diagnosis = j.diagnosis,
           first_ms = at, first_state = j.to}
      if verdict(j.to) == 'up' then
        -- Up when first seen is no news, silenced or not: nothing is held back.
        r.notified = j.to
      end
      changed = true
    elseif j.to ~= 'running' and j.to ~= 'pending' and verdict(j.to) ~= verdict(r.state) then
      if tonumber(r.at_ms) and at < tonumber(r.at_ms) then at = tonumber(r.at_ms) end
      if at > seen then at = seen end
      recorded = redis.call('XADD', inc, 'MAXLEN', '~', maxlen, '*', 'entry', name,
        'from', r.state, 'to', j.to, 'diagnosis', j.diagnosis, 'reason', j.reason,
        'at_ms', at, 'seen_ms', seen, 'monitor', monitor)
      redis.call('PEXPIRE', inc, ttl)
      r.state, r.at_ms, r.seen_ms, r.diagnosis = j.to, at, seen, j.diagnosis
      r.transitions = (tonumber(r.transitions) or 0) + 1
      changed = true
    elseif j.to == 'ok' and r.state ~= 'ok' and verdict(r.state) == 'up' then
      -- Pending or running, now ok: the same verdict, said more exactly (no transition).
      r.state, r.seen_ms = 'ok', seen
      changed = true
    end
    local note = ''
    local notified = r.notified
    if (notified == nil or verdict(notified) ~= verdict(r.state)) and not service_silenced
        and not entry_silenced(name) then
      -- Not silenced, and the last verdict notified is not this one: also when a silence
      -- ended while the verdict differs from what was notified before it (held back).
      if notified ~= nil or verdict(r.state) ~= 'up' then
        note = cjson.encode({kind = 'transition', service = service, entry = name,
          old_state = notified or 'unknown', new_state = r.state, diagnosis = r.diagnosis,
          reason = j.reason, since_ms = r.at_ms, seen_ms = seen, incident = recorded})
        if outbox then
          redis.call('XADD', outbox, 'MAXLEN', '~', outmax, '*', 'event', note)
        end
      end
      r.notified = r.state
      changed = true
    elseif notified ~= nil and notified ~= r.state and verdict(notified) == verdict(r.state) then
      -- Notified pending, now ok: the same verdict; the next notification says ok -> ...
      r.notified = r.state
      changed = true
    end
    if changed then
      redis.call('HSET', obs, name, cjson.encode(r))
      wrote = true
    end
    out[#out + 1] = {r.state, recorded, note}
  end
end
if complete and redis.call('HLEN', obs) > #ARGV - 8 then
  -- Entries no longer in the service's entries hash (forgotten, expired): their record goes.
  for _, name in ipairs(redis.call('HKEYS', obs)) do
    if not names[name] then redis.call('HDEL', obs, name); wrote = true end
  end
end
if wrote or redis.call('PTTL', obs) < ttl / 2 then
  -- Written, or steady for half its TTL: the record and its stream stay as long.
  redis.call('PEXPIRE', obs, ttl)
  redis.call('PEXPIRE', inc, ttl)
end
return out

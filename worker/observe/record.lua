-- Records each service's judged state; a change becomes one incident entry and, unless
-- the service is silenced, one notification. Atomic per call, so however many monitors
-- run, a transition is recorded and notified exactly once: the second monitor to see it
-- finds the state already recorded.
-- KEYS: (observed, incidents, silence) per service, then the outbox when ARGV[5] is '1'.
-- ARGV[1] incident stream cap, ARGV[2] TTL of the record and the stream (ms), ARGV[3]
-- outbox cap, ARGV[4] the monitor's id, ARGV[5] '1': add notifications to the outbox here
-- ('0': return them, on a Redis Cluster where the outbox is in another slot), then one
-- JSON judgement per service: service, to, diagnosis, reason, at (when the state began,
-- ms), seen (the Redis clock of the judgement, ms), age, seq.
-- An ongoing state that is not fresh whose diagnosis changes (the hop becomes known:
-- beat_or_broker, then broker_down) is one more entry, kind 'diagnosis' (from = to, with
-- old_diagnosis), and, unless silenced, one notification of kind 'diagnosis'. A change to
-- beat_or_broker (less known than what was recorded) is not recorded.
-- A service is notified only once the monitors have seen it fresh (`fresh_ms`, when first
-- seen fresh): one first seen late, stale, missing or invalid is recorded, not notified,
-- and its record and stream expire within NEVER_FRESH_TTL_MS unless judged again, so a
-- name added to the index that never published pages nobody and soon leaves no keys.
-- Returns per service: the recorded state, the new incident's id or '', the notification
-- (JSON) or '', and 1 when nothing is left to notify (the state recorded is the state
-- notified last, or the service was never fresh: a monitor may skip a service that stays
-- so; see monitor.py), else 0 (a notification held back by a silence).
local NEVER_FRESH_TTL_MS = 3600000
local maxlen, full_ttl, outmax, monitor = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n = #KEYS
local outbox = nil
if ARGV[5] == '1' then outbox = KEYS[n]; n = n - 1 end
local out = {}
for i = 0, n / 3 - 1 do
  local obs, inc, sil = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local j = cjson.decode(ARGV[6 + i])
  local cur = redis.call('HMGET', obs, 'state', 'seen_ms', 'at_ms', 'notified', 'diagnosis',
    'notified_diagnosis', 'fresh_ms')
  local state, seen, since, notified = cur[1], tonumber(cur[2]), tonumber(cur[3]), cur[4]
  local diagnosis, notified_diagnosis = cur[5] or '', cur[6]
  -- Seen fresh once (or notified before fresh_ms was kept): its record lives full_ttl.
  local known = cur[7] ~= false or notified ~= false
  local ttl = full_ttl
  if not known and j.to ~= 'fresh' then ttl = math.min(full_ttl, NEVER_FRESH_TTL_MS) end
  if seen and j.seen < seen then
    -- Judged before the last recorded change (a slower monitor): it says nothing new.
    out[i + 1] = {state or '', '', '', 0}
  else
    local recorded = ''
    if state ~= j.to then
      local at = j.at
      if since and at < since then at = since end
      if at > j.seen then at = j.seen end
      if state then
        recorded = redis.call('XADD', inc, 'MAXLEN', '~', maxlen, '*', 'from', state,
          'to', j.to, 'diagnosis', j.diagnosis, 'reason', j.reason, 'at_ms', at,
          'seen_ms', j.seen, 'age_s', j.age, 'seq', j.seq, 'monitor', monitor)
        redis.call('HINCRBY', obs, 'transitions', 1)
        redis.call('PEXPIRE', inc, ttl)
      else
        -- The first judgement of this service: where its record starts, not a transition.
        redis.call('HSET', obs, 'first_ms', at, 'first_state', j.to)
      end
      redis.call('HSET', obs, 'state', j.to, 'at_ms', at, 'seen_ms', j.seen,
        'diagnosis', j.diagnosis)
      if j.to == 'fresh' and not known then
        redis.call('HSET', obs, 'fresh_ms', at)
        known = true
      end
      redis.call('PEXPIRE', obs, ttl)
      state, since, diagnosis = j.to, at, j.diagnosis
    elseif state ~= 'fresh' and j.diagnosis ~= '' and j.diagnosis ~= diagnosis
        and j.diagnosis ~= 'beat_or_broker' then
      -- The same state, its hop now known (or changed): amend the record with an entry.
      recorded = redis.call('XADD', inc, 'MAXLEN', '~', maxlen, '*', 'kind', 'diagnosis',
        'from', state, 'to', state, 'old_diagnosis', diagnosis, 'diagnosis', j.diagnosis,
        'reason', j.reason, 'at_ms', j.seen, 'seen_ms', j.seen, 'age_s', j.age, 'seq', j.seq,
        'monitor', monitor)
      redis.call('HSET', obs, 'diagnosis', j.diagnosis, 'seen_ms', j.seen)
      redis.call('PEXPIRE', obs, ttl)
      redis.call('PEXPIRE', inc, ttl)
      diagnosis = j.diagnosis
    elseif redis.call('PTTL', obs) < ttl / 2 then
      -- A service steady for weeks keeps its record: refreshed when half its TTL is gone.
      redis.call('PEXPIRE', obs, ttl)
      redis.call('PEXPIRE', inc, ttl)
    end
    local note = ''
    if notified_diagnosis == false and notified == state then
      -- A record from before diagnosis notes: what was notified is taken as known.
      notified_diagnosis = diagnosis
      redis.call('HSET', obs, 'notified_diagnosis', diagnosis)
    end
    if notified ~= state and redis.call('EXISTS', sil) == 0 then
      -- Not silenced, and the last state notified is not this one: also when a silence
      -- ended while the state differs from what was notified before it (held back).
      if notified or (known and state ~= 'fresh') then
        note = cjson.encode({kind = 'transition', service = j.service,
          old_state = notified or 'unknown', new_state = state, diagnosis = diagnosis,
          reason = j.reason, age_s = j.age, seq = j.seq, since_ms = since, seen_ms = j.seen,
          incident = recorded})
        if outbox then
          redis.call('XADD', outbox, 'MAXLEN', '~', outmax, '*', 'event', note)
        end
      end
      if known then
        redis.call('HSET', obs, 'notified', state, 'notified_diagnosis', diagnosis)
      end
    elseif notified == state and state ~= 'fresh' and diagnosis ~= ''
        and notified_diagnosis ~= diagnosis and redis.call('EXISTS', sil) == 0 then
      -- The state was notified with another diagnosis (just now amended, or during a
      -- silence that has ended): say the hop, once.
      note = cjson.encode({kind = 'diagnosis', service = j.service, old_state = state,
        new_state = state, old_diagnosis = notified_diagnosis or '', diagnosis = diagnosis,
        reason = j.reason, age_s = j.age, seq = j.seq, since_ms = since, seen_ms = j.seen,
        incident = recorded})
      if outbox then
        redis.call('XADD', outbox, 'MAXLEN', '~', outmax, '*', 'event', note)
      end
      redis.call('HSET', obs, 'notified_diagnosis', diagnosis)
    end
    -- Settled: nothing left to notify (notified as it is, or never fresh: never notified).
    local settled = 0
    if redis.call('HGET', obs, 'notified') == state or (not known and state ~= 'fresh') then
      settled = 1
    end
    out[i + 1] = {state, recorded, note, settled}
  end
end
return out

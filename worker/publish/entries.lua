-- Beat entries of the user's app: one record per entry, its runs' check-ins, on this
-- server's clock. One script, one round trip per check-in.
-- KEYS[1] entries (hash: entry name -> record JSON)  KEYS[2] runs (stream, capped)
-- ARGV[1] op: sync | remove | dispatch | start | finish  ARGV[2] retention ms
-- ARGV[3] stream cap
--   sync     ARGV[4] JSON array of watched entries (some or all), each {name, task,
--            schedule, kind, tz, queue, grace_s, max_runtime_s, period_s, next_due_in_ms}
--   remove   ARGV[4] JSON array of names that left the schedule: each is marked removed
--            once (beat finds them by HKEYS; at most 100 a call)
--   dispatch ARGV[4] name  ARGV[5] task id  ARGV[6] due in ms (<= 0: how late it went out)
--            ARGV[7] next due in ms  ARGV[8] beat id  ARGV[9] queue depth ('' = unknown)
--   start    ARGV[4] name  ARGV[5] task id  ARGV[6] worker node
--   finish   ARGV[4] name  ARGV[5] task id  ARGV[6] outcome: succeeded | failed | retrying
--            | revoked | rejected  ARGV[7] error type  ARGV[8] error message (cut, redacted)
-- Returns the server time in ms. A check-in of a run that is not the entry's last dispatched
-- one (a late retry of an older run, or a task id beat never dispatched) only goes to the
-- stream: it never rewrites the entry's state.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local retention = ARGV[2]

local function load(name)
  local raw = redis.call('HGET', KEYS[1], name)
  if not raw then return nil end
  local ok, rec = pcall(cjson.decode, raw)
  if ok and type(rec) == 'table' then return rec end
  return nil
end

local function save(name, rec)
  redis.call('HSET', KEYS[1], name, cjson.encode(rec))
end

local function event(fields)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'at_ms', string.format('%d', now),
    unpack(fields))
end

local function ms(value)
  return string.format('%d', value)
end

if op == 'sync' then
  local listed = cjson.decode(ARGV[4])
  local seen = {}
  for _, e in ipairs(listed) do
    seen[e.name] = true
    local rec = load(e.name)
    local what = nil
    if not rec then
      rec = {name = e.name, counts = {}, added_ms = now}
      what = 'added'
    elseif rec.removed_ms then
      rec.removed_ms = nil
      what = 'added'
    elseif rec.schedule ~= e.schedule or rec.task ~= e.task or rec.queue ~= e.queue then
      what = 'changed'
    end
    rec.task = e.task
    rec.schedule = e.schedule
    rec.kind = e.kind
    rec.tz = e.tz
    rec.queue = e.queue
    rec.grace_s = e.grace_s
    rec.max_runtime_s = e.max_runtime_s
    rec.period_s = e.period_s
    rec.next_due_ms = now + e.next_due_in_ms
    rec.synced_ms = now
    save(e.name, rec)
    if what then
      event({'event', what, 'entry', e.name, 'schedule', e.schedule})
    end
  end
elseif op == 'remove' then
  for _, name in ipairs(cjson.decode(ARGV[4])) do
    local rec = load(name)
    if rec and not rec.removed_ms then
      rec.removed_ms = now
      save(name, rec)
      event({'event', 'removed', 'entry', name})
    end
  end
else
  local name = ARGV[4]
  local id = ARGV[5]
  local rec = load(name)
  if op == 'dispatch' then
    rec = rec or {name = name, counts = {}, added_ms = now}
    local prev = rec.run
    local next_in = tonumber(ARGV[7])
    local period = next_in
    if type(rec.period_s) == 'number' then period = rec.period_s * 1000 end
    if prev and prev.dispatched_ms and period and period > 0
        and (now - prev.dispatched_ms) * 2 < period then
      rec.duplicate_ms = now
      rec.duplicate_beats = {prev.beat or '', ARGV[8]}
    end
    if prev and prev.outcome then
      rec.last_outcome = prev.outcome
      rec.last_error = prev.error_type and (prev.error_type .. ': ' .. (prev.error or '')) or nil
    end
    -- Runs that never started pile up behind one another (a queue nobody consumes): the
    -- wait counts from the oldest of them, not from the last dispatch.
    local waiting = now
    if prev and not prev.started_ms and not prev.finished_ms then
      waiting = prev.waiting_since_ms or prev.dispatched_ms or now
    end
    rec.run = {id = id, due_ms = now + tonumber(ARGV[6]), dispatched_ms = now,
               waiting_since_ms = waiting, beat = ARGV[8], depth = tonumber(ARGV[9])}
    rec.next_due_ms = now + next_in
    rec.counts = rec.counts or {}
    rec.counts.dispatched = (rec.counts.dispatched or 0) + 1
    save(name, rec)
    event({'event', 'dispatched', 'entry', name, 'id', id, 'due_ms', ms(rec.run.due_ms)})
  elseif rec and rec.run and rec.run.id == id then
    local run = rec.run
    if op == 'start' then
      if not run.started_ms then
        run.queue_wait_ms = now - run.dispatched_ms
      end
      run.started_ms = now
      run.finished_ms = nil
      run.node = ARGV[6]
      run.attempts = (run.attempts or 0) + 1
      save(name, rec)
      event({'event', 'started', 'entry', name, 'id', id, 'node', ARGV[6]})
    else
      local outcome = ARGV[6]
      run.finished_ms = now
      run.outcome = outcome
      if run.started_ms then run.duration_ms = now - run.started_ms end
      if outcome == 'succeeded' then
        rec.last_success_ms = now
        rec.last_duration_ms = run.duration_ms
        rec.last_queue_wait_ms = run.queue_wait_ms
      elseif outcome ~= 'retrying' then
        rec.last_failure_ms = now
      end
      if ARGV[7] ~= '' then
        run.error_type = ARGV[7]
        run.error = ARGV[8]
      end
      rec.counts = rec.counts or {}
      rec.counts[outcome] = (rec.counts[outcome] or 0) + 1
      save(name, rec)
      event({'event', outcome, 'entry', name, 'id', id, 'error_type', ARGV[7]})
    end
  else
    event({'event', op .. '_unmatched', 'entry', name, 'id', id})
  end
end
redis.call('PEXPIRE', KEYS[1], retention)
redis.call('PEXPIRE', KEYS[2], retention)
return now

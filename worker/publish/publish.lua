-- One heartbeat write: atomic, one round trip, stamped with this server's clock.
-- KEYS[1] latest  KEYS[2] history  KEYS[3] nodes (only looked at)
-- KEYS[4] index  KEYS[5] summary shard (both absent on a cluster: written apart)
-- ARGV[1] body: the payload's other fields as a JSON object without its opening brace
--   and with a leading comma (',"schema":1,...}'): the script prepends its own fields
-- ARGV[2] service  ARGV[3] retention ms  ARGV[4] history cap  ARGV[5] events channel
-- ARGV[6] future tolerance ms  ARGV[7] status  ARGV[8] queue lag ms ('' = unknown)
-- ARGV[9] duration ms  ARGV[10] queue depth ('' = unknown)
-- ARGV[11] the summary's other fields, the same way (',"interval_s":10,...}', or '}')
-- Returns {accepted (1/0), seq, ts_ms, summary}: on 0, the stored (newer) seq and ts_ms
-- and no summary; the summary ('' when written here) for the caller to write apart.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local seq = 1
-- The first 64 bytes hold seq and ts_ms (47 at most): no copy of a 16 KiB value.
local old = redis.pcall('GETRANGE', KEYS[1], 0, 63)
if type(old) == 'string' then
  -- The store always writes seq and ts_ms first, so an anchored match reads them back;
  -- a value that is not ours (or has absurd numbers) does not match and is replaced.
  local old_seq, old_ts = string.match(old, '^{"seq":(%d+),"ts_ms":(%d+),')
  if old_seq and #old_seq <= 15 and #old_ts <= 15 then
    old_seq = tonumber(old_seq)
    old_ts = tonumber(old_ts)
    if old_ts > now and old_ts <= now + tonumber(ARGV[6]) then
      -- A newer heartbeat is stored (a server clock that stepped back, a failover):
      -- never move the heartbeat backwards.
      return {0, old_seq, old_ts}
    end
    seq = old_seq + 1
  end
end

local function iso(ms)
  -- Epoch ms to ISO-8601 UTC (days-to-civil, H. Hinnant), Lua 5.1 arithmetic only.
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local sod = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03d+00:00', y, m, d,
    math.floor(sod / 3600), math.floor(sod % 3600 / 60), sod % 60, ms % 1000)
end

local now_text = string.format('%d', now)
local seq_text = string.format('%d', seq)
local head = '{"seq":' .. seq_text .. ',"ts_ms":' .. now_text .. ',"timestamp":"' .. iso(now)
  .. '"'
local payload = head .. ARGV[1]
redis.call('SET', KEYS[1], payload, 'PX', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'ts_ms', now_text, 'seq', seq_text,
  'status', ARGV[7], 'lag_ms', ARGV[8], 'duration_ms', ARGV[9], 'queue_depth', ARGV[10])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
-- nodes: 1 when the service has a node set, for a fleet read to fetch it (rarely).
local summary = head .. ',"nodes":' .. redis.call('EXISTS', KEYS[3]) .. ARGV[11]
if KEYS[4] then
  redis.call('ZADD', KEYS[4], now, ARGV[2])
  redis.call('HSET', KEYS[5], ARGV[2], summary)
  summary = ''
end
redis.call('PUBLISH', ARGV[5], payload)
return {1, seq, now, summary}

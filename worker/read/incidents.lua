-- The monitors' record of each service, for uptime: the record's state, first_ms, at_ms
-- and diagnosis (HMGET), one page of the incident stream: its entries from the service's
-- start id back to ARGV[1] (the longest window), newest first, at most the service's count
-- (XREVRANGE with COUNT: a stream is read in short pages, never whole), and the silence
-- (GET; false when absent or longer than ARGV[3] bytes: never read whole).
-- Every value returned is cut to ARGV[2] bytes, and of an entry only the fields a summary
-- reads are kept, so one reply is bounded whatever was written.
-- One call reads at most ARGV[4] entries: a service whose stream (XLEN) would pass that is
-- not read (false, false, false: ask again), unless it is the first; so one call is short.
-- KEYS: (observed, incidents, silence) per service; ARGV[5...]: (start id, count) per
-- service. Read-only; at most 999 keys a call.
local cut, most, budget, spent = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), 0
local wanted = {from = true, to = true, diagnosis = true, reason = true, at_ms = true,
                kind = true}
local out = {}
for i = 1, #KEYS, 3 do
  local k = (i - 1) / 3
  local start, count = ARGV[5 + 2 * k], tonumber(ARGV[6 + 2 * k])
  local size = math.min(redis.call('XLEN', KEYS[i + 1]), count)
  if spent > 0 and spent + size > budget then
    out[#out + 1] = false
    out[#out + 1] = false
    out[#out + 1] = false
  else
    spent = spent + size
    local record = redis.call('HMGET', KEYS[i], 'state', 'first_ms', 'at_ms', 'diagnosis')
    for j = 1, #record do
      if record[j] then record[j] = string.sub(record[j], 1, cut) end
    end
    out[#out + 1] = record
    local entries = redis.call('XREVRANGE', KEYS[i + 1], start, ARGV[1], 'COUNT', count)
    for _, entry in ipairs(entries) do
      local fields, kept = entry[2], {}
      for j = 1, #fields - 1, 2 do
        if wanted[fields[j]] then
          kept[#kept + 1] = fields[j]
          kept[#kept + 1] = string.sub(fields[j + 1], 1, cut)
        end
      end
      entry[2] = kept
    end
    out[#out + 1] = entries
    if redis.call('STRLEN', KEYS[i + 2]) <= most then
      out[#out + 1] = redis.call('GET', KEYS[i + 2])
    else
      out[#out + 1] = false
    end
  end
end
return out

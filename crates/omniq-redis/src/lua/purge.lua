-- purge: ARGV[A..] = queue, cutoff, max.
-- Deletes results finished before `cutoff` and finished tasks last updated before it,
-- at most `max` of each per call. Returns {results removed, more ('1'/'0'), task ids…}.
local q = ARGV[A]
local P = NS .. q .. '}:'
local cutoff = '(' .. ARGV[A + 1]
local max = tonumber(ARGV[A + 2])
local removed = 0
local rs = redis.call('ZRANGEBYSCORE', P .. 'res', '-inf', cutoff, 'LIMIT', 0, max)
for _, id in ipairs(rs) do
  removed = removed + redis.call('DEL', P .. 'r:' .. id)
  redis.call('ZREM', P .. 'res', id)
end
local out = {removed, '0'}
local ids = redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', cutoff, 'LIMIT', 0, max)
for _, id in ipairs(ids) do
  local tk = P .. 't:' .. id
  local st = status_of(tk)
  if (not st) or st == 'success' or st == 'failed' or st == 'cancelled' then
    redis.call('DEL', tk)
    redis.call('ZREM', P .. 's:success', id)
    redis.call('ZREM', P .. 's:failed', id)
    redis.call('ZREM', P .. 's:cancelled', id)
    if INLINE then redis.call('DEL', LOC .. id) end
    out[#out + 1] = id
  end
  redis.call('ZREM', P .. 'done', id)
end
if #rs == max or #ids == max then out[2] = '1' end
return out

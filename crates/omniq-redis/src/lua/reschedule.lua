-- reschedule: ARGV[A..] = queue ('' = locator), id, new_eta, now.
-- Returns {code, wake}: code 'n' (not found), 'x:<status>' (finished: unchanged), or
-- 'o:<old status>'.
local id = ARGV[A + 1]
local P, q = locate(id, ARGV[A])
if not P then return {'n', ''} end
local eta, now = tonumber(ARGV[A + 2]), tonumber(ARGV[A + 3])
local tk = P .. 't:' .. id
local f = redis.call('HMGET', tk, 'st', 'uk')
local st = f[1]
if not st then return {'n', ''} end
if st == 'success' or st == 'cancelled' then return {'x:' .. st, ''} end
requeue(P, q, id, st, eta, now, nil)
if st == 'failed' then
  -- Live again: keep the record, its locator and (if free) its unique key.
  redis.call('PERSIST', tk)
  if INLINE then redis.call('PERSIST', LOC .. id) end
  redis.call('ZREM', P .. 'done', id)
  local uk = f[2]
  if uk then
    local holder = redis.call('HGET', P .. 'uniq', uk)
    local live = false
    if holder and holder ~= id then
      local hs = redis.call('HGET', P .. 't:' .. holder, 'st')
      live = hs == 'pending' or hs == 'running'
    end
    if not live then redis.call('HSET', P .. 'uniq', uk, id) end
  end
end
local msg = publish()
return {'o:' .. st, msg}

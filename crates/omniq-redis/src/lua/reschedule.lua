-- reschedule: ARGV[A..] = queue ('' = locator), id, new_eta, now.
-- Returns {code, wake}: code 'n' (not found), 'x:<status>' (finished: unchanged),
-- 'k:<holder id>' (a Failed task whose unique key another live task holds: unchanged), or
-- 'o:<old status>'.
local id = ARGV[A + 1]
local P, q = locate(id, ARGV[A])
if not P then return {'n', ''} end
local eta, now = tonumber(ARGV[A + 2]), tonumber(ARGV[A + 3])
local tk = P .. 't:' .. id
local f = read(P, id)
if not f then return {'n', ''} end
local st = f.st
if st == 'success' or st == 'cancelled' then return {'x:' .. st, ''} end
if st == 'failed' and f.uk ~= '' then
  -- Live again only if its unique key is free: two live tasks never share one.
  local holder = redis.call('HGET', P .. 'uniq', f.uk)
  if holder and holder ~= id then
    local hs = status_of(P .. 't:' .. holder)
    if hs == 'pending' or hs == 'running' then return {'k:' .. holder, ''} end
  end
end
-- Brought back by hand: a fresh allowance of runs.
f.ru = '0'
requeue(P, q, id, st, eta, now, nil, f, nil)
if st == 'failed' then
  -- Live again: keep the record, its locator and its unique key.
  redis.call('PERSIST', tk)
  if INLINE then redis.call('PERSIST', LOC .. id) end
  zrem(P .. 'done', id)
  if f.uk ~= '' then redis.call('HSET', P .. 'uniq', f.uk, id) end
end
local msg = finalize()
return {'o:' .. st, msg}

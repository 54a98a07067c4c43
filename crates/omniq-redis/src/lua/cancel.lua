-- cancel: ARGV[A..] = queue ('' = locator), id, now.
-- Returns {code, ended, wake}: code 'n', 'x:<status>' (already finished), 'c' (cancelled),
-- 'r' (requested: Running under a live lease).
local id = ARGV[A + 1]
local P = locate(id, ARGV[A])
if not P then return {'n', ended, ''} end
local now = tonumber(ARGV[A + 2])
local tk = P .. 't:' .. id
local f = redis.call('HMGET', tk, 'st', 'lu')
local st = f[1]
if not st then return {'n', ended, ''} end
if st == 'success' or st == 'cancelled' then return {'x:' .. st, ended, ''} end
local code = 'c'
if st == 'running' and f[2] and tonumber(f[2]) > now then
  redis.call('HSET', tk, 'cr', '1')
  code = 'r'
else
  cancel_now(P, id, st, now, nil)
  trim(P, 100)
end
local msg = publish()
return {code, ended, msg}

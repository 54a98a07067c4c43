-- cancel: ARGV[A..] = queue ('' = locator), id, now.
-- Returns {code, ended, wake}: code 'n', 'x:<status>' (already finished), 'c'
-- (cancelled), 'r' (requested: Running under a live lease).
local id = ARGV[A + 1]
local P = locate(id, ARGV[A])
if not P then return {'n', ended, ''} end
local now = tonumber(ARGV[A + 2])
local f = read(P, id)
if not f then return {'n', ended, ''} end
local st = f.st
if st == 'success' or st == 'cancelled' then return {'x:' .. st, ended, ''} end
local code = 'c'
if st == 'running' and tonumber(f.lu) and tonumber(f.lu) > now then
  f.cr = '1'
  f.up = ts(now)
  save(P, id, f)
  code = 'r'
else
  cancel_now(P, id, st, now, nil, f)
  trim(P, 100)
end
local msg = finalize()
return {code, ended, msg}

-- heartbeat: ARGV[A..] = until, n, then per lease: queue ('' = use the locator), id, token.
-- Returns one code per lease: 'o' extended, 'c' extended and cancellation requested,
-- 'l' lease lost, 'n' not found.
local untilv = ARGV[A]
local n = tonumber(ARGV[A + 1])
local out = {}
for i = 1, n do
  local b = A + 1 + (i - 1) * 3
  local id, token = ARGV[b + 2], ARGV[b + 3]
  local P = locate(id, ARGV[b + 1])
  local code, f = fence(P, id, token)
  if not code then
    -- A lease that ran out but was not re-claimed still holds the current token: its
    -- task may wait in the ready set, so take it back from there.
    zrem(P .. 'ready', f.rk)
    f.lu = untilv
    save(P, id, f)
    zadd(P .. 'leases', untilv, id)
    if f.cr == '1' then code = 'c' else code = 'o' end
  end
  out[i] = code
end
finalize()
return table.concat(out)

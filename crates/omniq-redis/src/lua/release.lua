-- release: ARGV[A..] = now, n, then per lease: queue ('' = locator), id, token.
-- A released task is Pending again at once (its eta unchanged, so straight into the
-- ready set), its claim's attempt not counted; a flagged one ends Cancelled.
-- Returns {codes, ended, wake}: one code per lease ('o', 'l', 'n').
local now = tonumber(ARGV[A])
local n = tonumber(ARGV[A + 1])
local out = {}
for i = 1, n do
  local b = A + 1 + (i - 1) * 3
  local id, token = ARGV[b + 2], ARGV[b + 3]
  local P, q = locate(id, ARGV[b + 1])
  local code, f = fence(P, id, token)
  if not code then
    code = 'o'
    local at = (tonumber(f.at) or 1) - 1
    if at < 0 then at = 0 end
    if f.cr == '1' then
      -- Ends Cancelled, the claim's attempt still not counted (on the result too).
      f.at = ts(at)
      cancel_now(P, id, 'running', now, nil, f)
    else
      unqueue(P, id, f.rk)
      move_status(P, id, 'running', 'pending')
      f.st, f.at, f.up, f.lu = 'pending', ts(at), ts(now), ''
      save(P, id, f)
      zadd(P .. 'ready', 0, f.rk)
      wake_work(q)
    end
  end
  out[i] = code
end
local msg = finalize()
return {table.concat(out), ended, msg}

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
  local code = fence(P, id, token)
  if not code then
    code = 'o'
    local tk = P .. 't:' .. id
    local f = redis.call('HMGET', tk, 'cr', 'at', 'pr', 'due', 'sq')
    if f[1] == '1' then
      cancel_now(P, id, 'running', now, nil)
    else
      unqueue(P, id)
      move_status(P, id, 'running', 'pending')
      local at = tonumber(f[2]) - 1
      if at < 0 then at = 0 end
      local rk = rkey(tonumber(f[3]), tonumber(f[4]), tonumber(f[5]), id)
      redis.call('HSET', tk, 'st', 'pending', 'at', ts(at), 'up', ts(now), 'rk', rk)
      redis.call('HDEL', tk, 'lu')
      redis.call('ZADD', P .. 'ready', 0, rk)
      wake_work(q)
    end
  end
  out[i] = code
end
local msg = publish()
return {table.concat(out), ended, msg}

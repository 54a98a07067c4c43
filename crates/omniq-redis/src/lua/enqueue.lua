-- enqueue: ARGV[A] = n, then per task 15 values:
--   queue, id, record, status, eta ('' = none), due (eta or created_at), priority,
--   seq, attempts, updated_at, last_attempt_at (''), error (''), unique key (''), runs,
--   schedule member (`rkey` of priority, due, seq and id, built by the client)
-- Checks everything first, then writes (a Lua error would not roll back earlier
-- writes). Returns {'ok', wake, ended, r1, …, rn} with ri = '' (stored) or the id of
-- the live task holding its unique key, or {'conflict', id} (nothing written) when an
-- id exists.
local n = tonumber(ARGV[A])
local K = 15
local out = {'ok', '', {}}
local seen_id, seen_uk = {}, {}
for i = 1, n do
  local b = A + (i - 1) * K
  local q, id, st, uk = ARGV[b + 1], ARGV[b + 2], ARGV[b + 4], ARGV[b + 13]
  local P = NS .. q .. '}:'
  -- On one server the locator exists exactly while the task does: taking it (SET NX)
  -- is the existence check; a conflict gives back the locators taken so far.
  local taken
  if seen_id[id] then
    taken = false
  elseif INLINE then
    taken = redis.call('SET', LOC .. id, q, 'NX')
  else
    taken = redis.call('EXISTS', P .. 't:' .. id) == 0
  end
  if not taken then
    if INLINE then
      for prev, _ in pairs(seen_id) do redis.call('DEL', LOC .. prev) end
    end
    return {'conflict', id}
  end
  seen_id[id] = true
  local dup = ''
  if uk ~= '' and st == 'pending' then
    local sk = q .. ':' .. uk
    if seen_uk[sk] then
      dup = seen_uk[sk]
    else
      local holder = redis.call('HGET', P .. 'uniq', uk)
      if holder then
        local hs = status_of(P .. 't:' .. holder)
        if hs == 'pending' or hs == 'running' then dup = holder end
      end
      if dup == '' then seen_uk[sk] = id end
    end
  end
  if dup ~= '' and INLINE then redis.call('DEL', LOC .. id) end
  out[i + 3] = dup
end
if INLINE then
  -- On one server KEYS[1] is the namespace's queue set: registered here, in the same
  -- round trip (a cluster client adds them itself: the set lives in another slot).
  local qs, seen_q = {}, {}
  for i = 1, n do
    local q = ARGV[A + (i - 1) * K + 1]
    if not seen_q[q] then
      seen_q[q] = true
      qs[#qs + 1] = q
    end
  end
  redis.call('SADD', KEYS[1], unpack(qs))
end
for i = 1, n do
  if out[i + 3] == '' then
    local b = A + (i - 1) * K
    local q, id, rec, st = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
    local eta, due, pr, sq = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
    local at, up, la, er, uk = ARGV[b + 9], ARGV[b + 10], ARGV[b + 11], ARGV[b + 12], ARGV[b + 13]
    local P = NS .. q .. '}:'
    local tk = P .. 't:' .. id
    local rk = ARGV[b + 15]
    local m = st .. '|0|' .. at .. '|' .. up .. '|' .. la .. '||' .. '|' .. due .. '|' .. pr .. '|' .. sq .. '|' .. eta
      .. '|' .. ARGV[b + 14]
    if uk ~= '' and er ~= '' then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'er', er, 'uk', uk)
    elseif uk ~= '' then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'uk', uk)
    elseif er ~= '' then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'er', er)
    else
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk)
    end
    zadd(P .. 's:' .. st, 0, id)
    if st == 'pending' then
      zadd(P .. 'sched', due, rk)
      if uk ~= '' then redis.call('HSET', P .. 'uniq', uk, id) end
      wake_work(q)
    else
      -- Stored already finished, as given: it expires like any finished task.
      local exp = tonumber(up) + TTL
      local ms = math.floor(exp / 1000)
      zadd(P .. 'done', up, id)
      bump(P .. 'done', exp)
      bump(P .. 's:' .. st, exp)
      if INLINE then redis.call('PEXPIREAT', LOC .. id, ts(ms)) end
      redis.call('PEXPIREAT', tk, ts(ms))
      ended[#ended + 1] = id
      ended[#ended + 1] = ms
    end
  end
end
out[2] = finalize()
out[3] = ended
return out

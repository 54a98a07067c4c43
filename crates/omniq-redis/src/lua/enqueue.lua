-- enqueue: ARGV[A] = n, then per task 13 values:
--   queue, id, record, status, eta ('' = none), due (eta or created_at), priority,
--   seq, attempts, updated_at, last_attempt_at (''), error (''), unique key ('')
-- Checks everything first, then writes (a Lua error would not roll back earlier
-- writes). Returns {'ok', wake, ended, r1, …, rn} with ri = '' (stored) or the id of
-- the live task holding its unique key, or {'conflict', id} (nothing written) when an
-- id exists.
local n = tonumber(ARGV[A])
local K = 13
local out = {'ok', '', {}}
local seen_id, seen_uk = {}, {}
for i = 1, n do
  local b = A + (i - 1) * K
  local q, id, st, uk = ARGV[b + 1], ARGV[b + 2], ARGV[b + 4], ARGV[b + 13]
  local P = NS .. q .. '}:'
  if seen_id[id] or redis.call('EXISTS', P .. 't:' .. id) == 1
      or (INLINE and redis.call('EXISTS', LOC .. id) == 1) then
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
        local hs = redis.call('HGET', P .. 't:' .. holder, 'st')
        if hs == 'pending' or hs == 'running' then dup = holder end
      end
      if dup == '' then seen_uk[sk] = id end
    end
  end
  out[i + 3] = dup
end
for i = 1, n do
  if out[i + 3] == '' then
    local b = A + (i - 1) * K
    local q, id, rec, st = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
    local eta, due, pr, sq = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
    local at, up, la, er, uk = ARGV[b + 9], ARGV[b + 10], ARGV[b + 11], ARGV[b + 12], ARGV[b + 13]
    local P = NS .. q .. '}:'
    local tk = P .. 't:' .. id
    redis.call('HSET', tk, 'd', rec, 'st', st, 'due', due, 'pr', pr, 'sq', sq, 'at', at, 'up', up, 'tk', '0')
    if eta ~= '' then redis.call('HSET', tk, 'eta', eta) end
    if la ~= '' then redis.call('HSET', tk, 'la', la) end
    if er ~= '' then redis.call('HSET', tk, 'er', er) end
    if uk ~= '' then redis.call('HSET', tk, 'uk', uk) end
    redis.call('ZADD', P .. 's:' .. st, 0, id)
    if INLINE then redis.call('SET', LOC .. id, q) end
    if st == 'pending' then
      redis.call('ZADD', P .. 'sched', due, id)
      if uk ~= '' then redis.call('HSET', P .. 'uniq', uk, id) end
      wake_work(q)
    else
      -- Stored already finished, as given: it expires like any finished task.
      local upn = tonumber(up)
      local exp = upn + TTL
      local ms = math.floor(exp / 1000)
      redis.call('ZADD', P .. 'done', up, id)
      bump(P .. 'done', exp)
      bump(P .. 's:' .. st, exp)
      if INLINE then redis.call('PEXPIREAT', LOC .. id, ms) end
      redis.call('PEXPIREAT', tk, ms)
      ended[#ended + 1] = id
      ended[#ended + 1] = ms
    end
  end
end
out[2] = publish()
out[3] = ended
return out

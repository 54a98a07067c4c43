-- enqueue: ARGV[A] = n, then per task 7 values and the extras its flags announce:
--   queue, id, record, state `m` (as stored, built by the client), schedule member
--   (`rkey`, built by the client), due (the `sched` score), flags; then one value per
--   flag letter, in this order: 'u' unique key, 'e' error, 's' status and 't'
--   updated_at of a task stored already finished (no 's': Pending).
-- Checks everything first, then writes (a Lua error would not roll back earlier
-- writes). Returns {'ok', wake, ended, r1, …, rn} with ri = '' (stored) or the id of
-- the live task holding its unique key, or {'conflict', id} (nothing written) when an
-- id exists.
local n = tonumber(ARGV[A])
local out = {'ok', '', {}}
local seen_id, seen_uk, seen_q = {}, {}, {}
local qs = {}
local prefix = {}
-- Per task: the offset of its row, its key prefix, and its extras.
local rows, ps, uks, ers, sts, ups = {}, {}, {}, {}, {}, {}
local clash = false
local b = A
for i = 1, n do
  rows[i] = b
  local q, id, x = ARGV[b + 1], ARGV[b + 2], ARGV[b + 7]
  local P = prefix[q]
  if not P then
    P = NS .. q .. '}:'
    prefix[q] = P
    seen_q[q] = true
    qs[#qs + 1] = q
  end
  ps[i] = P
  if seen_id[id] then clash = true end
  seen_id[id] = true
  local k = b + 7
  if x ~= '' then
    local u, e, s, t = '', '', nil, nil
    for c in string.gmatch(x, '.') do
      k = k + 1
      if c == 'u' then u = ARGV[k]
      elseif c == 'e' then e = ARGV[k]
      elseif c == 's' then s = ARGV[k]
      elseif c == 't' then t = ARGV[k] end
    end
    uks[i], ers[i], sts[i], ups[i] = u, e, s, t
  end
  b = k
end

-- Every id must be new. The fast path checks the whole batch at once: on one server
-- the locators are taken with MSETNX (the locator exists exactly while its task does),
-- on a cluster the task keys are counted with EXISTS. Only when that fails (or an id
-- repeats in the batch) are the ids checked one by one, to name the first conflict.
local function conflict()
  local seen = {}
  for i = 1, n do
    local id = ARGV[rows[i] + 2]
    local taken
    if seen[id] then
      taken = true
    elseif INLINE then
      taken = redis.call('EXISTS', LOC .. id) == 1
    else
      taken = redis.call('EXISTS', ps[i] .. 't:' .. id) == 1
    end
    if taken then return {'conflict', id} end
    seen[id] = true
  end
  return {'conflict', ''}
end
if clash then return conflict() end
if INLINE then
  local set, list = {}, {}
  local i = 1
  while i <= n do
    local j = math.min(i + 2999, n)
    for t = i, j do
      local r = rows[t]
      list[#list + 1] = LOC .. ARGV[r + 2]
      list[#list + 1] = ARGV[r + 1]
    end
    if redis.call('MSETNX', unpack(list)) == 0 then
      for _, key in ipairs(set) do redis.call('DEL', key) end
      return conflict()
    end
    for t = 1, #list, 2 do set[#set + 1] = list[t] end
    list = {}
    i = j + 1
  end
else
  local list = {}
  for i = 1, n do list[#list + 1] = ps[i] .. 't:' .. ARGV[rows[i] + 2] end
  local found = 0
  local i = 1
  while i <= n do
    local j = math.min(i + 5999, n)
    found = found + redis.call('EXISTS', unpack(list, i, j))
    i = j + 1
  end
  if found > 0 then return conflict() end
end

-- Unique keys of Pending inputs: a live holder makes the input a duplicate.
for i = 1, n do
  local dup = ''
  local uk = uks[i]
  if uk and uk ~= '' and not sts[i] then
    local r = rows[i]
    local q = ARGV[r + 1]
    local P = ps[i]
    local sk = q .. ':' .. uk
    if seen_uk[sk] then
      dup = seen_uk[sk]
    else
      local holder = redis.call('HGET', P .. 'uniq', uk)
      if holder then
        local hs = status_of(P .. 't:' .. holder)
        if hs == 'pending' or hs == 'running' then dup = holder end
      end
      if dup == '' then seen_uk[sk] = ARGV[r + 2] end
    end
    if dup ~= '' and INLINE then redis.call('DEL', LOC .. ARGV[r + 2]) end
  end
  out[i + 3] = dup
end

-- On one server KEYS[1] is the namespace's queue set: registered here, in the same
-- round trip (a cluster client adds them itself: the set lives in another slot).
if INLINE then redis.call('SADD', KEYS[1], unpack(qs)) end

-- Per queue prefix: the `s:pending` and `sched` lists flush() adds (built here directly,
-- without a key concatenation per task).
local pend = {}
for i = 1, n do
  if out[i + 3] == '' then
    local r = rows[i]
    local q, id, rec, m, rk = ARGV[r + 1], ARGV[r + 2], ARGV[r + 3], ARGV[r + 4], ARGV[r + 5]
    local P = ps[i]
    local tk = P .. 't:' .. id
    local uk, er, st = uks[i], ers[i], sts[i]
    if not uk then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk)
    elseif uk ~= '' and er ~= '' then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'er', er, 'uk', uk)
    elseif uk ~= '' then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'uk', uk)
    elseif er ~= '' then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'er', er)
    else
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk)
    end
    if not st then
      local l = pend[P]
      if not l then
        local pk, sk = P .. 's:pending', P .. 'sched'
        l = {zadds[pk] or {}, zadds[sk] or {}}
        pend[P] = l
        zadds[pk], zadds[sk] = l[1], l[2]
      end
      local a, z = l[1], l[2]
      a[#a + 1] = '0'
      a[#a + 1] = id
      z[#z + 1] = ARGV[r + 6]
      z[#z + 1] = rk
      if uk and uk ~= '' then redis.call('HSET', P .. 'uniq', uk, id) end
      wake_work(q)
    else
      -- Stored already finished, as given: it expires like any finished task.
      local up = ups[i]
      local exp = tonumber(up) + TTL
      local ms = math.floor(exp / 1000)
      zadd(P .. 's:' .. st, 0, id)
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

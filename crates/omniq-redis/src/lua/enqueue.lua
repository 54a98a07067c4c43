-- enqueue: ARGV[A] = n, then 5 values per task: id, record, state `m` (as stored, built
--   by the client), schedule member (`rkey`, built by the client), due (the `sched`
--   score); then the queues as runs over the tasks in order: the number of runs, then
--   per run its queue and its length; then the tasks with extras: their number, then
--   per such task its position (1-based), its flags and one value per flag letter, in
--   this order: 'u' unique key, 'e' error, 's' status and 't' updated_at of a task stored
--   already finished (no 's': Pending).
-- Checks everything first, then writes (a Lua error would not roll back earlier
-- writes). Returns {'ok', wake, ended, r1, …, rn} with ri = '' (stored) or the id of
-- the live task holding its unique key, or {'conflict', id} (nothing written) when an
-- id exists.
local n = tonumber(ARGV[A])
local R = A + 1
local out = {'ok', '', {}}
local seen_uk = {}
local qs = {}
-- Per task: its queue, its key prefix, and its extras (sparse).
local qn, ps, uks, ers, sts, ups = {}, {}, {}, {}, {}, {}
local b = R + 5 * n
local i = 1
for _ = 1, tonumber(ARGV[b]) do
  local q, len = ARGV[b + 1], tonumber(ARGV[b + 2])
  b = b + 2
  local P = NS .. q .. '}:'
  qs[#qs + 1] = q
  for t = i, i + len - 1 do
    qn[t] = q
    ps[t] = P
  end
  i = i + len
end
if i ~= n + 1 then return redis.error_reply('enqueue: queue runs do not cover the batch') end
b = b + 1
for _ = 1, tonumber(ARGV[b]) do
  local t, x = tonumber(ARGV[b + 1]), ARGV[b + 2]
  local k = b + 2
  local u, e, s, up = '', '', nil, nil
  for c in string.gmatch(x, '.') do
    k = k + 1
    if c == 'u' then u = ARGV[k]
    elseif c == 'e' then e = ARGV[k]
    elseif c == 's' then s = ARGV[k]
    elseif c == 't' then up = ARGV[k] end
  end
  uks[t], ers[t], sts[t], ups[t] = u, e, s, up
  b = k
end

-- Every id must be new. The fast path checks the whole batch at once: on one server
-- the locators are taken with MSETNX (the locator exists exactly while its task does),
-- on a cluster the task keys are counted with EXISTS. Only when that fails (or an id
-- repeats in the batch) are the ids checked one by one, to name the first conflict.
local function conflict()
  local seen = {}
  for t = 1, n do
    local id = ARGV[R + 5 * (t - 1)]
    local taken
    if seen[id] then
      taken = true
    elseif INLINE then
      taken = redis.call('EXISTS', LOC .. id) == 1
    else
      taken = redis.call('EXISTS', ps[t] .. 't:' .. id) == 1
    end
    if taken then return {'conflict', id} end
    seen[id] = true
  end
  return {'conflict', ''}
end
if INLINE then
  -- A repeated id makes MSETNX fail too (a key named twice in one call is set by the
  -- first pair only if the second is absent: MSETNX checks all keys first, then sets).
  local set, list = {}, {}
  local s = 1
  while s <= n do
    local e = math.min(s + 2999, n)
    local seen = {}
    for t = s, e do
      local id = ARGV[R + 5 * (t - 1)]
      if seen[id] then
        for _, key in ipairs(set) do redis.call('DEL', key) end
        return conflict()
      end
      seen[id] = true
      list[#list + 1] = LOC .. id
      list[#list + 1] = qn[t]
    end
    if redis.call('MSETNX', unpack(list)) == 0 then
      for _, key in ipairs(set) do redis.call('DEL', key) end
      return conflict()
    end
    for t = 1, #list, 2 do set[#set + 1] = list[t] end
    list = {}
    s = e + 1
  end
else
  local list, seen = {}, {}
  for t = 1, n do
    local id = ARGV[R + 5 * (t - 1)]
    if seen[id] then return conflict() end
    seen[id] = true
    list[t] = ps[t] .. 't:' .. id
  end
  local found = 0
  local s = 1
  while s <= n do
    local e = math.min(s + 5999, n)
    found = found + redis.call('EXISTS', unpack(list, s, e))
    s = e + 1
  end
  if found > 0 then return conflict() end
end

-- Unique keys of Pending inputs: a live holder makes the input a duplicate.
local dups = {}
for t, uk in pairs(uks) do
  if uk ~= '' and not sts[t] then
    local sk = qn[t] .. ':' .. uk
    if seen_uk[sk] == nil then seen_uk[sk] = {} end
    local l = seen_uk[sk]
    l[#l + 1] = t
  end
end
for _, l in pairs(seen_uk) do
  -- In input order: the first input holds the key unless a live task does.
  table.sort(l)
  local first = l[1]
  local P = ps[first]
  local holder = redis.call('HGET', P .. 'uniq', uks[first])
  local live = ''
  if holder then
    local hs = status_of(P .. 't:' .. holder)
    if hs == 'pending' or hs == 'running' then live = holder end
  end
  local keeper = live
  if keeper == '' then keeper = ARGV[R + 5 * (first - 1)] end
  for j, t in ipairs(l) do
    if live ~= '' or j > 1 then
      dups[t] = keeper
      if INLINE then redis.call('DEL', LOC .. ARGV[R + 5 * (t - 1)]) end
    end
  end
end
for t = 1, n do out[t + 3] = dups[t] or '' end

-- On one server KEYS[1] is the namespace's queue set: registered here, in the same
-- round trip (a cluster client adds them itself: the set lives in another slot).
if INLINE then redis.call('SADD', KEYS[1], unpack(qs)) end

-- Per queue prefix: the `s:pending` and `sched` lists flush() adds (built here directly,
-- without a key concatenation per task).
local pend = {}
local P, a, z
for t = 1, n do
  if not dups[t] then
    local r = R + 5 * (t - 1)
    local id, rec, m, rk = ARGV[r], ARGV[r + 1], ARGV[r + 2], ARGV[r + 3]
    if ps[t] ~= P then
      P = ps[t]
      local l = pend[P]
      if not l then
        local pk, sk = P .. 's:pending', P .. 'sched'
        l = {zadds[pk] or {}, zadds[sk] or {}}
        pend[P] = l
        zadds[pk], zadds[sk] = l[1], l[2]
      end
      a, z = l[1], l[2]
    end
    local tk = P .. 't:' .. id
    local uk, st = uks[t], sts[t]
    if not uk then
      redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk)
    else
      local er = ers[t]
      if uk ~= '' and er ~= '' then
        redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'er', er, 'uk', uk)
      elseif uk ~= '' then
        redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'uk', uk)
      elseif er ~= '' then
        redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk, 'er', er)
      else
        redis.call('HSET', tk, 'd', rec, 'm', m, 'rk', rk)
      end
    end
    if not st then
      a[#a + 1] = '0'
      a[#a + 1] = id
      z[#z + 1] = ARGV[r + 4]
      z[#z + 1] = rk
      if uk and uk ~= '' then redis.call('HSET', P .. 'uniq', uk, id) end
      wake_work(qn[t])
    else
      -- Stored already finished, as given: it expires like any finished task.
      local up = ups[t]
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

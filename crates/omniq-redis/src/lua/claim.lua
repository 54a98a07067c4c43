-- claim: ARGV[A..] = now, until, limit, promote (max promotions / redeliveries per
-- queue), mode ('claim' | 'peek'), broken (the encoded decode error a task whose state
-- `m` does not parse fails with), nq, queue names…
-- Per queue: expired leases are redelivered (into the ready set) or, when their
-- cancellation was requested, end Cancelled; due scheduled tasks are promoted into the
-- ready set; both bounded by `promote`. Then 'claim' takes the `limit` best ready tasks
-- over all the queues (global order), 'peek' only returns each queue's `limit` best
-- ready members (a cluster client merges them, then claims per queue).
-- Returns {claimed, ended, peeked, wake}: claimed = {{id, token, attempts, record, eta,
-- error, runs}…}, ended = {id, expire_ms, …}, peeked = {{queue, member…}…}.
local now = tonumber(ARGV[A])
local untilv = ARGV[A + 1]
local limit = tonumber(ARGV[A + 2])
local pmax = tonumber(ARGV[A + 3])
local mode = ARGV[A + 4]
local broken = ARGV[A + 5]
local nq = tonumber(ARGV[A + 6])
local nows = ts(now)
local queues = {}
local claimed, peeked = {}, {}

-- A state whose every field reads back (see convert.rs State).
local STATUSES = {pending = true, running = true, success = true, failed = true,
                  cancelled = true}
local function num(x) return string.match(x, '^%-?%d+$') ~= nil end
local function opt(x) return x == '' or num(x) end
local function sane(f, m)
  if not STATUSES[f.st] then return false end
  -- The usual shape, in one scan: every field after the status digits or empty, and
  -- the required ones present (anything else takes the field-by-field check).
  if f.at ~= '' and f.up ~= '' and f.ru ~= '' and not string.find(m, '[^%d|]', #f.st + 2) then
    return true
  end
  return opt(f.tk) and num(f.at) and num(f.up) and opt(f.la)
    and opt(f.lu) and opt(f.due) and opt(f.pr) and opt(f.sq) and opt(f.eta) and num(f.ru)
end

-- 'st|tk|at|up|la|lu|cr|due|pr|sq|eta|ru' in its usual shape: status, token, attempts,
-- cancel requested, the five fields a claim keeps, eta and runs.
local CLAIM_PAT = '^(%l+)|(%d*)|(%d+)|%d+|%d*|%d*|(%d*)|(%d*|%d*|%d*|(%d*)|(%d+))$'

-- A task whose state cannot be read fails alone: a fresh Failed state, a Failed result
-- with the decode error, out of every index.
local function fail_broken(P, id, tk, member)
  local uk = redis.call('HGET', tk, 'uk') or ''
  local g = {st = 'failed', tk = '0', at = '0', up = nows, la = '', lu = '', cr = '',
             due = nows, pr = '0', sq = '0', eta = '', ru = '0', uk = uk, er = '',
             rk = member}
  for _, st in ipairs({'pending', 'running', 'success', 'cancelled'}) do
    zrem(P .. 's:' .. st, id)
  end
  store_result(P, id, 'failed', false, broken, now, '0', '')
  finish(P, id, 'unreadable', 'failed', now, g, {'er', broken})
  wake_fin(id)
end

-- A picked task in any other state (see the short path below): read field by field.
local function claim_other(P, id, tk, member, v)
  local f = v[1] and unpack_m(v[1])
  if f and not sane(f, v[1]) then f = nil end
  if not f and (v[1] or v[2]) then
    fail_broken(P, id, tk, member)
  elseif not f then
    -- A ready member without its record (expired or deleted): dropped.
  elseif f.cr == '1' then
    -- Flagged while its expired lease waited here: its worker is gone.
    cancel_now(P, id, f.st, now, nil, read(P, id))
  elseif f.st == 'pending' or f.st == 'running' then
    local from = f.st
    f.at = ts((tonumber(f.at) or 0) + 1)
    f.tk = ts((tonumber(f.tk) or 0) + 1)
    f.st, f.la, f.up, f.lu = 'running', nows, nows, untilv
    save(P, id, f)
    move_status(P, id, from, 'running')
    zadd(P .. 'leases', untilv, id)
    claimed[#claimed + 1] = {id, f.tk, f.at, v[2], f.eta, v[3] or '', f.ru}
  end
end

for j = 1, nq do
  local q = ARGV[A + 6 + j]
  local P = NS .. q .. '}:'
  queues[j] = {q, P}
  local ex = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', nows, 'LIMIT', 0, pmax)
  local back = 0
  for _, id in ipairs(ex) do
    local f = read(P, id)
    zrem(P .. 'leases', id)
    if f and f.st == 'running' then
      if f.cr == '1' then
        cancel_now(P, id, 'running', now, nil, f)
      else
        zadd(P .. 'ready', 0, f.rk)
        back = back + 1
      end
    end
  end
  if back > 0 then wake_work(q) end
  -- `sched` members are the ready members: promotion moves strings, reads nothing.
  local due = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', nows, 'LIMIT', 0, pmax)
  if #due > 0 then
    local rk = P .. 'ready'
    local l = zadds[rk]
    if not l then l = {}; zadds[rk] = l end
    local k = #l
    for i = 1, #due do
      l[k + 1] = 0
      l[k + 2] = due[i]
      k = k + 2
    end
    redis.call('ZREMRANGEBYRANK', P .. 'sched', 0, #due - 1)
  end
end
flush()

if limit > 0 and mode == 'peek' then
  for j = 1, nq do
    local m = redis.call('ZRANGE', queues[j][2] .. 'ready', 0, limit - 1)
    table.insert(m, 1, queues[j][1])
    peeked[j] = m
  end
elseif limit > 0 then
  -- The best `limit` members over all queues.
  local picks = {}
  if nq == 1 then
    -- Every pick is taken: popped at once (all scores are 0, so ZPOPMIN is ZRANGE's
    -- lexicographic order).
    local m = redis.call('ZPOPMIN', queues[1][2] .. 'ready', limit)
    for i = 1, #m, 2 do picks[#picks + 1] = {m[i], 1} end
  else
    for j = 1, nq do
      local m = redis.call('ZRANGE', queues[j][2] .. 'ready', 0, limit - 1)
      for _, member in ipairs(m) do picks[#picks + 1] = {member, j} end
    end
    table.sort(picks, function(a, b) return a[1] < b[1] end)
  end
  -- Per queue, the keys a claim writes (built once per call).
  local qk = {}
  for j = 1, nq do
    local P = queues[j][2]
    qk[j] = {t = P .. 't:', leases = P .. 'leases', pending = P .. 's:pending',
             running = P .. 's:running'}
  end
  for i = 1, math.min(limit, #picks) do
    local member, j = picks[i][1], picks[i][2]
    local P = queues[j][2]
    local k = qk[j]
    local id = string.sub(member, RK_ID)
    local tk = k.t .. id
    if nq > 1 then zrem(P .. 'ready', member) end
    local v = redis.call('HMGET', tk, 'm', 'd', 'er')
    -- The usual state (see `sane`: every field after the status digits, the required
    -- ones present), Pending or Running and not flagged for cancellation, is read
    -- with one pattern and written back by replacing the fields that change.
    local st, tk0, at0, cr, tail, eta, ru
    if v[1] then st, tk0, at0, cr, tail, eta, ru = string.match(v[1], CLAIM_PAT) end
    if (st == 'pending' or st == 'running') and cr ~= '1' then
      local at = ts(tonumber(at0) + 1)
      local tok = ts((tonumber(tk0) or 0) + 1)
      redis.call('HSET', tk, 'm', 'running|' .. tok .. '|' .. at .. '|' .. nows .. '|' .. nows .. '|'
        .. untilv .. '|' .. cr .. '|' .. tail)
      if st ~= 'running' then
        zrem(k.pending, id)
        zadd(k.running, 0, id)
      end
      zadd(k.leases, untilv, id)
      claimed[#claimed + 1] = {id, tok, at, v[2], eta, v[3] or '', ru}
    else
      claim_other(P, id, tk, member, v)
    end
  end
end
local msg = finalize()
return {claimed, ended, peeked, msg}

-- claim: ARGV[A..] = now, until, limit, promote (max promotions / redeliveries per
-- queue), mode ('claim' | 'peek'), nq, queue names…
-- Per queue: expired leases are redelivered (into the ready set) or, when their
-- cancellation was requested, end Cancelled; due scheduled tasks are promoted into the
-- ready set; both bounded by `promote`. Then 'claim' takes the `limit` best ready tasks
-- over all the queues (global order), 'peek' only returns each queue's `limit` best
-- ready members (a cluster client merges them, then claims per queue).
-- Returns {claimed, ended, peeked}: claimed = {{id, token, attempts, record, eta, error}…},
-- ended = {id, expire_ms, …}, peeked = {{queue, member…}…}, wake = the message.
local now = tonumber(ARGV[A])
local untilv = ARGV[A + 1]
local limit = tonumber(ARGV[A + 2])
local pmax = tonumber(ARGV[A + 3])
local mode = ARGV[A + 4]
local nq = tonumber(ARGV[A + 5])
local nows = ts(now)
local queues = {}
for j = 1, nq do
  local q = ARGV[A + 5 + j]
  local P = NS .. q .. '}:'
  queues[j] = {q, P}
  local ex = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', nows, 'LIMIT', 0, pmax)
  local back = 0
  for _, id in ipairs(ex) do
    local tk = P .. 't:' .. id
    local f = redis.call('HMGET', tk, 'st', 'cr', 'pr', 'due', 'sq')
    redis.call('ZREM', P .. 'leases', id)
    if f[1] == 'running' then
      if f[2] == '1' then
        cancel_now(P, id, 'running', now, nil)
      else
        local rk = rkey(tonumber(f[3]), tonumber(f[4]), tonumber(f[5]), id)
        redis.call('ZADD', P .. 'ready', 0, rk)
        redis.call('HSET', tk, 'rk', rk)
        back = back + 1
      end
    end
  end
  if back > 0 then wake_work(q) end
  local due = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', nows, 'LIMIT', 0, pmax)
  if #due > 0 then
    for _, id in ipairs(due) do
      local tk = P .. 't:' .. id
      local f = redis.call('HMGET', tk, 'pr', 'due', 'sq')
      if f[1] then
        local rk = rkey(tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), id)
        redis.call('ZADD', P .. 'ready', 0, rk)
        redis.call('HSET', tk, 'rk', rk)
      end
    end
    redis.call('ZREMRANGEBYRANK', P .. 'sched', 0, #due - 1)
  end
end

local claimed, peeked = {}, {}
if limit > 0 and mode == 'peek' then
  for j = 1, nq do
    local m = redis.call('ZRANGE', queues[j][2] .. 'ready', 0, limit - 1)
    table.insert(m, 1, queues[j][1])
    peeked[j] = m
  end
elseif limit > 0 then
  -- The best `limit` members over all queues.
  local picks = {}
  for j = 1, nq do
    local m = redis.call('ZRANGE', queues[j][2] .. 'ready', 0, limit - 1)
    for _, member in ipairs(m) do picks[#picks + 1] = {member, j} end
  end
  if nq > 1 then
    table.sort(picks, function(a, b) return a[1] < b[1] end)
  end
  for i = 1, math.min(limit, #picks) do
    local member, j = picks[i][1], picks[i][2]
    local q, P = queues[j][1], queues[j][2]
    local id = string.sub(member, RK_ID)
    local tk = P .. 't:' .. id
    redis.call('ZREM', P .. 'ready', member)
    local f = redis.call('HMGET', tk, 'st', 'cr', 'd', 'eta', 'er')
    if not f[1] then
      -- A ready member without its record (expired or deleted): drop it.
    elseif f[2] == '1' then
      -- Flagged while its expired lease waited here: its worker is gone.
      redis.call('HDEL', tk, 'rk')
      cancel_now(P, id, f[1], now, nil)
    elseif f[1] == 'pending' or f[1] == 'running' then
      local tok = redis.call('HINCRBY', tk, 'tk', 1)
      local at = redis.call('HINCRBY', tk, 'at', 1)
      redis.call('HSET', tk, 'st', 'running', 'la', nows, 'up', nows, 'lu', untilv)
      redis.call('HDEL', tk, 'rk')
      move_status(P, id, f[1], 'running')
      redis.call('ZADD', P .. 'leases', untilv, id)
      claimed[#claimed + 1] = {id, tostring(tok), tostring(at), f[3], f[4], f[5]}
    end
  end
end
local msg = publish()
return {claimed, ended, peeked, msg}

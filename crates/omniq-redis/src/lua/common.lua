-- Shared prelude of every OmniQ script (prepended by scripts.rs).
--
-- Arguments 1-7 are the same for every script:
--   NS     queue key base 'omniq:{<ns>:'; a queue's keys start with NS .. queue .. '}:'
--          so all keys of one queue share one hash tag (one cluster slot)
--   LOC    locator key prefix 'omniq:<ns>:loc:' (locator: task id -> queue name)
--   INLINE '1' on a standalone server: the script reads and writes locators itself;
--          '0' on a cluster: the client resolves and maintains them (other slots)
--   TTL    result TTL in microseconds
--   WALL   the client's wall clock in microseconds: TTL bookkeeping only, never a
--          due or expiry decision (those use the request's `now`)
--   INST   this storage instance's tag, so it can skip its own wake-up messages
--   CHAN   the namespace's pub/sub channel
-- Times are unix microseconds; tokens and counters are decimal strings.
local NS = ARGV[1]
local LOC = ARGV[2]
local INLINE = ARGV[3] == '1'
local TTL = tonumber(ARGV[4])
local WALL = tonumber(ARGV[5])
local INST = ARGV[6]
local CHAN = ARGV[7]
local A = 8

local function ts(x)
  return string.format('%.0f', x)
end

local function clamp(x)
  if x < 0 then return 0 end
  if x > 9e15 then return 9e15 end
  return x
end

-- The ready-zset member: all scores are 0, so members sort lexicographically:
-- highest priority first, then earliest eta, then enqueue order, then id.
local function rkey(pr, due, sq, id)
  return string.format('%010.0f%017.0f%017.0f:', 2147483647 - pr, clamp(due), clamp(sq)) .. id
end
local RK_ID = 46

-- Wake-ups: one PUBLISH per call, 'inst|queue,queue|id,id'; the message is also
-- returned, so the calling instance delivers it locally at once.
local wq, wqs, wf = {}, {}, {}
local function wake_work(q)
  if not wqs[q] then
    wqs[q] = true
    wq[#wq + 1] = q
  end
end
local function wake_fin(id)
  wf[#wf + 1] = id
end
local function publish()
  if #wq == 0 and #wf == 0 then return '' end
  local msg = INST .. '|' .. table.concat(wq, ',') .. '|' .. table.concat(wf, ',')
  redis.call('PUBLISH', CHAN, msg)
  return msg
end

-- Tasks that ended (Success, Failed, Cancelled) in this call, with the instant their
-- locator must expire: a cluster client sets it (the locator lives in another slot).
local ended = {}

-- The queue of a task: given by the client (cluster), or read from the locator.
local function locate(id, q)
  if q ~= '' then return NS .. q .. '}:', q end
  if not INLINE then return nil end
  local found = redis.call('GET', LOC .. id)
  if not found then return nil end
  return NS .. found .. '}:', found
end

-- Extends a key's expiry to `exp_us` (never shortens it, never sets a past one).
local function bump(key, exp_us)
  local ms = math.floor(exp_us / 1000)
  if ms <= WALL / 1000 then return end
  local pt = redis.call('PTTL', key)
  if pt == -2 then return end
  if pt == -1 or (WALL / 1000 + pt) < ms then
    redis.call('PEXPIREAT', key, ms)
  end
end

-- Takes a task out of the schedule, ready and lease indexes.
local function unqueue(P, id)
  local tk = P .. 't:' .. id
  redis.call('ZREM', P .. 'sched', id)
  redis.call('ZREM', P .. 'leases', id)
  local rk = redis.call('HGET', tk, 'rk')
  if rk then
    redis.call('ZREM', P .. 'ready', rk)
    redis.call('HDEL', tk, 'rk')
  end
end

local function move_status(P, id, from, to)
  if from ~= to then
    redis.call('ZREM', P .. 's:' .. from, id)
    redis.call('ZADD', P .. 's:' .. to, 0, id)
  end
end

-- Stores a run's result, replacing an earlier one; it expires `TTL` after `fin`.
local function store_result(P, id, status, payload, err, fin, at, la)
  local k = P .. 'r:' .. id
  redis.call('DEL', k)
  redis.call('HSET', k, 's', status, 'f', ts(fin), 'a', at or '0')
  if payload then redis.call('HSET', k, 'p', payload) end
  if err then redis.call('HSET', k, 'e', err) end
  if la then redis.call('HSET', k, 'l', la) end
  local exp = fin + TTL
  redis.call('PEXPIREAT', k, math.floor(exp / 1000))
  redis.call('ZADD', P .. 'res', ts(fin), id)
  bump(P .. 'res', exp)
end

-- Ends a task (Success, Failed or Cancelled): out of every index, unique key freed,
-- the record (and, inline, its locator) expiring `TTL` after `now`.
local function finish(P, id, from, to, now)
  local tk = P .. 't:' .. id
  unqueue(P, id)
  move_status(P, id, from, to)
  redis.call('HSET', tk, 'st', to, 'up', ts(now))
  redis.call('HDEL', tk, 'lu', 'cr')
  local uk = redis.call('HGET', tk, 'uk')
  if uk and redis.call('HGET', P .. 'uniq', uk) == id then
    redis.call('HDEL', P .. 'uniq', uk)
  end
  local exp = now + TTL
  local ms = math.floor(exp / 1000)
  if INLINE then redis.call('PEXPIREAT', LOC .. id, ms) end
  redis.call('ZADD', P .. 'done', ts(now), id)
  bump(P .. 'done', exp)
  bump(P .. 's:' .. to, exp)
  redis.call('PEXPIREAT', tk, ms)
  ended[#ended + 1] = id
  ended[#ended + 1] = ms
end

-- Back to Pending at `eta` (attempts set to `at` unless nil); claimable once due.
local function requeue(P, q, id, from, eta, now, at)
  local tk = P .. 't:' .. id
  unqueue(P, id)
  move_status(P, id, from, 'pending')
  redis.call('HSET', tk, 'st', 'pending', 'eta', ts(eta), 'due', ts(eta), 'up', ts(now))
  if at then redis.call('HSET', tk, 'at', at) end
  redis.call('HDEL', tk, 'lu', 'cr')
  redis.call('ZADD', P .. 'sched', ts(eta), id)
  wake_work(q)
end

-- Ends a task Cancelled with a Cancelled result (no payload, its last error).
local function cancel_now(P, id, from, now, err)
  local tk = P .. 't:' .. id
  local f = redis.call('HMGET', tk, 'er', 'at', 'la')
  store_result(P, id, 'cancelled', false, err or f[1], now, f[2], f[3])
  finish(P, id, from, 'cancelled', now)
  wake_fin(id)
end

-- Fencing: nil when the task is Running under exactly `token`, else the outcome code.
local function fence(P, id, token)
  if not P then return 'n' end
  local f = redis.call('HMGET', P .. 't:' .. id, 'st', 'tk')
  if not f[1] then return 'n' end
  if f[1] ~= 'running' or f[2] ~= token then return 'l' end
  return nil
end

-- Drops index entries of finished tasks and results past their TTL (at most `max`
-- of each per call; the records themselves already expire by Redis TTL).
local function trim(P, max)
  local cutoff = '(' .. ts(WALL - TTL)
  local ids = redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', cutoff, 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    local tk = P .. 't:' .. id
    local st = redis.call('HGET', tk, 'st')
    if (not st) or st == 'success' or st == 'failed' or st == 'cancelled' then
      redis.call('DEL', tk)
      redis.call('ZREM', P .. 's:success', id)
      redis.call('ZREM', P .. 's:failed', id)
      redis.call('ZREM', P .. 's:cancelled', id)
    end
    redis.call('ZREM', P .. 'done', id)
  end
  local rs = redis.call('ZRANGEBYSCORE', P .. 'res', '-inf', cutoff, 'LIMIT', 0, max)
  for _, id in ipairs(rs) do
    redis.call('DEL', P .. 'r:' .. id)
    redis.call('ZREM', P .. 'res', id)
  end
end

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
-- Times are unix microseconds; tokens and counters are decimal strings; optional
-- task and result fields hold '' when absent.
local NS = ARGV[1]
local LOC = ARGV[2]
local INLINE = ARGV[3] == '1'
local TTL = tonumber(ARGV[4])
local WALL = tonumber(ARGV[5])
local INST = ARGV[6]
local CHAN = ARGV[7]
local A = 8

-- string.format is the costliest string operation a script does per task, and a batch
-- formats the same few instants and counters again and again: remembered per call.
local ts_memo = {}
local function ts(x)
  local s = ts_memo[x]
  if not s then
    s = string.format('%.0f', x)
    ts_memo[x] = s
  end
  return s
end

local function clamp(x)
  if x < 0 then return 0 end
  if x > 9e15 then return 9e15 end
  return x
end

-- A task's schedule member, the same string in `sched` (scored by eta) and `ready`
-- (score 0, so members sort lexicographically): highest priority first, then earliest
-- eta, then enqueue order, then id. Stored on the task as `rk`.
local function rkey(pr, due, sq, id)
  return string.format('%010.0f%017.0f%017.0f:', 2147483647 - pr, clamp(due), clamp(sq)) .. id
end
local RK_ID = 46

-- Sorted-set writes are batched per key and applied by flush(): removals first, then
-- additions, in chunks well under Lua's unpack limit.
local zrems, zadds = {}, {}
local function zrem(key, member)
  local l = zrems[key]
  if not l then l = {}; zrems[key] = l end
  l[#l + 1] = member
end
local function zadd(key, score, member)
  local l = zadds[key]
  if not l then l = {}; zadds[key] = l end
  l[#l + 1] = score
  l[#l + 1] = member
end
local function chunked(cmd, key, list)
  local n = #list
  local i = 1
  while i <= n do
    local j = math.min(i + 5999, n)
    redis.call(cmd, key, unpack(list, i, j))
    i = j + 1
  end
end
local function flush()
  for key, l in pairs(zrems) do chunked('ZREM', key, l) end
  for key, l in pairs(zadds) do chunked('ZADD', key, l) end
  zrems, zadds = {}, {}
end

-- Index keys of finished tasks expire with their newest member (never shortened,
-- never set in the past), so an idle namespace keeps nothing.
local bumps = {}
local function bump(key, exp_us)
  if not bumps[key] or bumps[key] < exp_us then bumps[key] = exp_us end
end
local function flush_bumps()
  for key, exp_us in pairs(bumps) do
    local ms = math.floor(exp_us / 1000)
    if ms > WALL / 1000 then
      local pt = redis.call('PTTL', key)
      if pt == -1 or (pt >= 0 and WALL / 1000 + pt < ms) then
        redis.call('PEXPIREAT', key, ms)
      end
    end
  end
  bumps = {}
end

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

-- Applies the batched writes and sends the wake-ups; returns the wake message.
local function finalize()
  flush()
  flush_bumps()
  return publish()
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

-- A task hash holds `d` (the encoded record), `m` (its changing state, below), `rk`
-- (its schedule member) and, when set, `er` (the encoded last error) and `uk` (its
-- unique key). `m` is one
-- string, 'st|tk|at|up|la|lu|cr|due|pr|sq|eta|ru': status, token, attempts, updated_at,
-- last_attempt_at, lease until, cancel requested ('1'), due (eta or created_at),
-- priority, enqueue sequence, eta ('' = none), recorded runs — one field to read and
-- write per change. States written before `ru` existed have 11 fields (runs 0); the
-- next write adds it.
-- (Literal patterns: built with string.rep they would be built again on every call.)
local M_PAT = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$'
local M_PAT_11 = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$'
local function unpack_m(m)
  local st, tk, at, up, la, lu, cr, due, pr, sq, eta, ru = string.match(m, M_PAT)
  if not st then
    st, tk, at, up, la, lu, cr, due, pr, sq, eta = string.match(m, M_PAT_11)
    if not st then return nil end
    ru = '0'
  end
  return {st = st, tk = tk, at = at, up = up, la = la, lu = lu, cr = cr, due = due,
          pr = pr, sq = sq, eta = eta, ru = ru}
end
local function pack_m(f)
  return f.st .. '|' .. f.tk .. '|' .. f.at .. '|' .. f.up .. '|' .. f.la .. '|' .. f.lu .. '|'
    .. f.cr .. '|' .. f.due .. '|' .. f.pr .. '|' .. f.sq .. '|' .. f.eta .. '|' .. f.ru
end

-- A task's state (nil when missing), with `uk`, `er` and its schedule member `rk`.
local function read(P, id)
  local v = redis.call('HMGET', P .. 't:' .. id, 'm', 'uk', 'er', 'rk')
  if not v[1] then return nil end
  local f = unpack_m(v[1])
  if not f then return nil end
  f.uk = v[2] or ''
  f.er = v[3] or ''
  f.rk = v[4] or rkey(tonumber(f.pr), tonumber(f.due), tonumber(f.sq), id)
  return f
end

-- Writes a task's state, plus `extra` field/value pairs.
local function save(P, id, f, extra)
  if extra then
    redis.call('HSET', P .. 't:' .. id, 'm', pack_m(f), unpack(extra))
  else
    redis.call('HSET', P .. 't:' .. id, 'm', pack_m(f))
  end
end

-- The status of a task record (nil when it is gone).
local function status_of(tk)
  local m = redis.call('HGET', tk, 'm')
  if not m then return nil end
  return string.match(m, '^([^|]*)|')
end

-- Fencing: (nil, state) when the task is Running under exactly `token`, else the
-- outcome code: 'n' not found, 'l' lease lost.
local function fence(P, id, token)
  if not P then return 'n' end
  local f = read(P, id)
  if not f then return 'n' end
  if f.st ~= 'running' or f.tk ~= token then return 'l' end
  return nil, f
end

-- Takes a task out of the schedule, ready and lease indexes (a Running task is never
-- in the schedule: only Pending ones are put there).
local function unqueue(P, id, rk, from)
  if from ~= 'running' then zrem(P .. 'sched', rk) end
  zrem(P .. 'ready', rk)
  zrem(P .. 'leases', id)
end

local function move_status(P, id, from, to)
  if from ~= to then
    zrem(P .. 's:' .. from, id)
    zadd(P .. 's:' .. to, 0, id)
  end
end

-- Stores a run's result, replacing an earlier one; it expires `TTL` after `fin`.
-- One string: 'status|finished_at|attempts|last_attempt_at|len(error)|len(payload) or
-- -|' followed by the error's and the payload's bytes.
local function store_result(P, id, status, payload, err, fin, at, la)
  local k = P .. 'r:' .. id
  local e = err or ''
  local plen, p = '-', ''
  if payload then
    plen, p = tostring(#payload), payload
  end
  local exp = fin + TTL
  local ms = math.floor(exp / 1000)
  if ms <= WALL / 1000 then
    redis.call('DEL', k)
  else
    local v = status .. '|' .. ts(fin) .. '|' .. (at or '0') .. '|' .. (la or '') .. '|' .. #e .. '|' .. plen .. '|' .. e .. p
    redis.call('SET', k, v, 'PXAT', ts(ms))
  end
  zadd(P .. 'res', ts(fin), id)
  bump(P .. 'res', exp)
end

-- Ends a task (Success, Failed or Cancelled): out of every index, unique key freed,
-- the record (and, inline, its locator) expiring `TTL` after `now`.
local function finish(P, id, from, to, now, f, extra)
  local tk = P .. 't:' .. id
  unqueue(P, id, f.rk, from)
  move_status(P, id, from, to)
  f.st, f.up, f.lu, f.cr = to, ts(now), '', ''
  save(P, id, f, extra)
  if f.uk ~= '' and redis.call('HGET', P .. 'uniq', f.uk) == id then
    redis.call('HDEL', P .. 'uniq', f.uk)
  end
  local exp = now + TTL
  local ms = math.floor(exp / 1000)
  -- As a memoized string: a number argument would be formatted again by every call.
  local mss = ts(ms)
  if INLINE then redis.call('PEXPIREAT', LOC .. id, mss) end
  zadd(P .. 'done', ts(now), id)
  bump(P .. 'done', exp)
  bump(P .. 's:' .. to, exp)
  redis.call('PEXPIREAT', tk, mss)
  ended[#ended + 1] = id
  ended[#ended + 1] = ms
end

-- Back to Pending at `eta` (attempts set to `at` unless nil; attempts '0' starts a new
-- series, so the recorded runs start over too); claimable once due.
local function requeue(P, q, id, from, eta, now, at, f, extra)
  unqueue(P, id, f.rk, from)
  move_status(P, id, from, 'pending')
  f.st, f.eta, f.due, f.up, f.lu, f.cr = 'pending', ts(eta), ts(eta), ts(now), '', ''
  if at then f.at = at end
  if at == '0' then f.ru = '0' end
  f.rk = rkey(tonumber(f.pr), eta, tonumber(f.sq), id)
  local x = {'rk', f.rk}
  if extra then
    for i = 1, #extra do x[#x + 1] = extra[i] end
  end
  save(P, id, f, x)
  zadd(P .. 'sched', ts(eta), f.rk)
  wake_work(q)
end

-- Ends a task Cancelled with a Cancelled result (no payload, its last error).
local function cancel_now(P, id, from, now, err, f)
  store_result(P, id, 'cancelled', false, err or f.er, now, f.at, f.la)
  local extra = nil
  if err then extra = {'er', err} end
  finish(P, id, from, 'cancelled', now, f, extra)
  wake_fin(id)
end

-- Drops index entries of finished tasks and results past their TTL (at most `max`
-- of each per call; the records themselves already expire by Redis TTL).
local function trim(P, max)
  local cutoff = '(' .. ts(WALL - TTL)
  local ids = redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', cutoff, 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    local tk = P .. 't:' .. id
    local st = status_of(tk)
    if (not st) or st == 'success' or st == 'failed' or st == 'cancelled' then
      redis.call('DEL', tk)
      zrem(P .. 's:success', id)
      zrem(P .. 's:failed', id)
      zrem(P .. 's:cancelled', id)
    end
    zrem(P .. 'done', id)
  end
  local rs = redis.call('ZRANGEBYSCORE', P .. 'res', '-inf', cutoff, 'LIMIT', 0, max)
  for _, id in ipairs(rs) do
    redis.call('DEL', P .. 'r:' .. id)
    zrem(P .. 'res', id)
  end
end

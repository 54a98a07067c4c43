-- complete: ARGV[A..] = n, then per item: queue ('' = locator), id, token, now,
-- has_result ('1'/'0'), result, next_run ('' = none).
-- Returns {codes, ended, wake}: one code per item ('o', 'l', 'n').
local n = tonumber(ARGV[A])
local K = 7
local out = {}
local touched = {}

-- The usual item, a Running task of today's layout under its token finishing Success,
-- takes a short path: the state read with one pattern (no table), written back by
-- replacing the fields that change, the queue's keys built once per call. Everything
-- else (another state shape, a missing schedule member, a next run) takes the general
-- path below, which reads the task again.
-- 'running|tk|at|up|la|lu|cr|due|pr|sq|eta|ru': token, attempts, last_attempt_at,
-- cancel requested and the five fields that stay.
local RUN_PAT = '^running|([^|]*)|([^|]*)|[^|]*|([^|]*)|[^|]*|([^|]*)|([^|]*|[^|]*|[^|]*|[^|]*|[^|]*)$'
local prefixes = {}
local qkeys = {}
local function keys_of(P)
  local k = qkeys[P]
  if not k then
    k = {t = P .. 't:', r = P .. 'r:', ready = P .. 'ready', leases = P .. 'leases',
         running = P .. 's:running', success = P .. 's:success', done = P .. 'done',
         res = P .. 'res', uniq = P .. 'uniq'}
    qkeys[P] = k
  end
  return k
end

local function fast(P, id, token, b)
  local k = keys_of(P)
  local tk = k.t .. id
  local v = redis.call('HMGET', tk, 'm', 'uk', 'rk')
  local m, rk = v[1], v[3]
  if not m or not rk then return false end
  local tok, at, la, cr, tail = string.match(m, RUN_PAT)
  if not tok or tok ~= token then return false end
  local next_run = ARGV[b + 7]
  if next_run ~= '' and cr ~= '1' then return false end
  local now = tonumber(ARGV[b + 4])
  local nows = ts(now)
  local exp = now + TTL
  local ms = math.floor(exp / 1000)
  local mss = ts(ms)
  -- The result (store_result in the prelude, inlined).
  local plen, p = '-', ''
  if ARGV[b + 5] == '1' then
    p = ARGV[b + 6]
    plen = tostring(#p)
  end
  local rkey_ = k.r .. id
  if ms <= WALL / 1000 then
    redis.call('DEL', rkey_)
  else
    redis.call('SET', rkey_, 'success|' .. nows .. '|' .. at .. '|' .. la .. '|0|' .. plen .. '|' .. p,
      'PXAT', mss)
  end
  zadd(k.res, nows, id)
  bump(k.res, exp)
  -- finish(): out of the indexes, Success, expiring with its locator.
  zrem(k.ready, rk)
  zrem(k.leases, id)
  zrem(k.running, id)
  zadd(k.success, 0, id)
  redis.call('HSET', tk, 'm', 'success|' .. tok .. '|' .. at .. '|' .. nows .. '|' .. la .. '|||' .. tail,
    'er', '')
  local uk = v[2]
  if uk and uk ~= '' and redis.call('HGET', k.uniq, uk) == id then
    redis.call('HDEL', k.uniq, uk)
  end
  if INLINE then redis.call('PEXPIREAT', LOC .. id, mss) end
  zadd(k.done, nows, id)
  bump(k.done, exp)
  bump(k.success, exp)
  redis.call('PEXPIREAT', tk, mss)
  ended[#ended + 1] = id
  ended[#ended + 1] = ms
  wake_fin(id)
  touched[P] = true
  return true
end

for i = 1, n do
  local b = A + (i - 1) * K
  local id, token = ARGV[b + 2], ARGV[b + 3]
  local q = ARGV[b + 1]
  local P
  if q ~= '' then
    P = prefixes[q]
    if not P then
      P = NS .. q .. '}:'
      prefixes[q] = P
    end
  end
  local code
  if P and fast(P, id, token, b) then
    code = 'o'
  else
    P, q = locate(id, q)
    local f
    code, f = fence(P, id, token)
    if not code then
      code = 'o'
      touched[P] = true
      local now = tonumber(ARGV[b + 4])
      local payload = false
      if ARGV[b + 5] == '1' then payload = ARGV[b + 6] end
      local next_run = ARGV[b + 7]
      store_result(P, id, 'success', payload, false, now, f.at, f.la)
      if next_run ~= '' and f.cr ~= '1' then
        requeue(P, q, id, 'running', tonumber(next_run), now, '0', f, {'er', ''})
      else
        finish(P, id, 'running', 'success', now, f, {'er', ''})
      end
      wake_fin(id)
    end
  end
  out[i] = code
end
for P, _ in pairs(touched) do trim(P, 100) end
local msg = finalize()
return {table.concat(out), ended, msg}

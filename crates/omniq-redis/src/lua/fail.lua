-- fail: ARGV[A..] = n, then per item: queue ('' = locator), id, token, now, error,
-- action ('r' retry, 'n' next run, 'f' fail, 'd' defer: the claim's attempt not
-- counted), at ('' for fail).
-- Returns {codes, ended, wake}: one code per item ('o', 'l', 'n').
local n = tonumber(ARGV[A])
local K = 7
local out = {}
local touched = {}
for i = 1, n do
  local b = A + (i - 1) * K
  local id, token = ARGV[b + 2], ARGV[b + 3]
  local P, q = locate(id, ARGV[b + 1])
  local code, f = fence(P, id, token)
  if not code then
    code = 'o'
    touched[P] = true
    local now = tonumber(ARGV[b + 4])
    local err, action, at = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
    if action == 'd' then
      local left = (tonumber(f.at) or 1) - 1
      if left < 0 then left = 0 end
      f.at = ts(left)
    end
    if f.cr == '1' then
      cancel_now(P, id, 'running', now, err, f)
    elseif action == 'r' or action == 'd' then
      requeue(P, q, id, 'running', tonumber(at), now, nil, f, {'er', err})
      wake_fin(id)
    elseif action == 'n' then
      store_result(P, id, 'failed', false, err, now, f.at, f.la)
      requeue(P, q, id, 'running', tonumber(at), now, '0', f, {'er', err})
      wake_fin(id)
    else
      store_result(P, id, 'failed', false, err, now, f.at, f.la)
      finish(P, id, 'running', 'failed', now, f, {'er', err})
      wake_fin(id)
    end
  end
  out[i] = code
end
for P, _ in pairs(touched) do trim(P, 100) end
local msg = finalize()
return {table.concat(out), ended, msg}

-- complete: ARGV[A..] = n, then per item: queue ('' = locator), id, token, now,
-- has_result ('1'/'0'), result, next_run ('' = none).
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
  out[i] = code
end
for P, _ in pairs(touched) do trim(P, 100) end
local msg = finalize()
return {table.concat(out), ended, msg}

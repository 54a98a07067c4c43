-- start: ARGV[A..] = n, then per lease: queue ('' = use the locator), id, token.
-- Records that each lease's handler is starting (runs + 1). Returns one code per
-- lease: 'o' recorded, 'l' lease lost, 'n' not found.
local n = tonumber(ARGV[A])
local out = {}
for i = 1, n do
  local b = A + (i - 1) * 3
  local id, token = ARGV[b + 2], ARGV[b + 3]
  local P = locate(id, ARGV[b + 1])
  local code, f = fence(P, id, token)
  if not code then
    f.ru = ts((tonumber(f.ru) or 0) + 1)
    save(P, id, f)
    code = 'o'
  end
  out[i] = code
end
return table.concat(out)

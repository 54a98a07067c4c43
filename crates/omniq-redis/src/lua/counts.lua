-- counts: ARGV[A..] = queue. Trims index entries past their TTL (bounded), then
-- returns the number of pending, running, success, failed and cancelled tasks.
local P = NS .. ARGV[A] .. '}:'
trim(P, 1000)
finalize()
return {
  redis.call('ZCARD', P .. 's:pending'),
  redis.call('ZCARD', P .. 's:running'),
  redis.call('ZCARD', P .. 's:success'),
  redis.call('ZCARD', P .. 's:failed'),
  redis.call('ZCARD', P .. 's:cancelled'),
}

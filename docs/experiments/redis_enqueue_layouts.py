#!/usr/bin/env python3
"""Server instructions per enqueued task for Redis key layouts (today's and candidates).

Starts a private redis-server under callgrind (port 6388), runs 10 batches of 1 000
tasks per layout through EVAL, and prints the server's instructions per task (counted
from a zeroed counter to a dump, so the counts do not depend on the machine's load).
Needs: redis-server, valgrind (callgrind_control), Python's `redis` package.

    python3 docs/experiments/redis_enqueue_layouts.py [LAYOUT ...]

Layouts:
  today     the real enqueue script (crates/omniq-redis/src/lua), 5 values per task
  nopend    today's script without the `s:pending` entry
  v2        tasks in one hash per queue (record and state in two hashes), locators in one
            namespace hash (checked with HMGET), `sched` only, a pending counter
  v2one     v2 with record and state in one field value (the client concatenates)
  v2noloc   v2one without the locator hash
  v2nosched v2one without the `sched` entry
  args      EVAL with v2one's arguments (4 per task) and a script that returns at once
  multi     v2one's writes as plain commands in MULTI/EXEC, no Lua (and no id check:
            HSET would overwrite a task whose id repeats, so this is a bound, not a design)
"""
import glob
import os
import subprocess
import sys
import time
import uuid

import redis

PORT = 6388
HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, '..', '..', 'crates', 'omniq-redis', 'src', 'lua')
COMMON = open(os.path.join(LUA, 'common.lua')).read()
TODAY = COMMON + '\n' + open(os.path.join(LUA, 'enqueue.lua')).read()
NOPEND = TODAY.replace("      a[#a + 1] = '0'\n      a[#a + 1] = id\n", "")
assert NOPEND != TODAY

V2 = r'''
local n = tonumber(ARGV[1]); local q = ARGV[2]; local P = 'omniq:{ns:' .. q .. '}:'
local ids, lp, dp, mp, z = {}, {}, {}, {}, {}
for t = 1, n do
  local b = 3 + 5 * (t - 1); local id = ARGV[b]
  ids[t] = id
  lp[#lp + 1] = id; lp[#lp + 1] = q
  dp[#dp + 1] = id; dp[#dp + 1] = ARGV[b + 1]
  mp[#mp + 1] = id; mp[#mp + 1] = ARGV[b + 2]
  z[#z + 1] = ARGV[b + 4]; z[#z + 1] = ARGV[b + 3]
end
local ex = redis.call('HMGET', 'omniq:ns:loc', unpack(ids))
for i = 1, n do if ex[i] then return {'conflict', ids[i]} end end
redis.call('HSET', 'omniq:ns:loc', unpack(lp))
redis.call('HSET', P .. 'd', unpack(dp))
redis.call('HSET', P .. 'm', unpack(mp))
redis.call('ZADD', P .. 'sched', unpack(z))
redis.call('HINCRBY', P .. 'n', 'pending', n)
return 'ok'
'''
LOC = ("local ex = redis.call('HMGET', 'omniq:ns:loc', unpack(ids))\n"
       "for i = 1, n do if ex[i] then return {'conflict', ids[i]} end end\n"
       "redis.call('HSET', 'omniq:ns:loc', unpack(lp))\n")
SCHED = "redis.call('ZADD', P .. 'sched', unpack(z))\n"
V2ONE = r'''
local n = tonumber(ARGV[1]); local q = ARGV[2]; local P = 'omniq:{ns:' .. q .. '}:'
local ids, lp, dp, z = {}, {}, {}, {}
for t = 1, n do
  local b = 3 + 4 * (t - 1); local id = ARGV[b]
  ids[t] = id
  lp[#lp + 1] = id; lp[#lp + 1] = q
  dp[#dp + 1] = id; dp[#dp + 1] = ARGV[b + 1]
  z[#z + 1] = ARGV[b + 3]; z[#z + 1] = ARGV[b + 2]
end
''' + LOC + "redis.call('HSET', P .. 'd', unpack(dp))\n" + SCHED + \
    "redis.call('HINCRBY', P .. 'n', 'pending', n)\nreturn 'ok'\n"
SCRIPTS = {
    'today': TODAY, 'nopend': NOPEND, 'v2': V2, 'v2one': V2ONE,
    'v2noloc': V2ONE.replace(LOC, ''), 'v2nosched': V2ONE.replace(SCHED, ''),
    'args': "return 'ok'",
    'multi': None,
}

REC = b'x' * 250  # an encoded task record of the bench's size
seq = [int(time.time() * 1e6)]


def task():
    seq[0] += 1
    tid, now = str(uuid.uuid4()), seq[0]
    m = 'pending|0|0|%d||||%d|0|%d||0' % (now, now, seq[0])  # today's state string
    rk = '%010d%017d%017d:' % (2147483647, now, seq[0]) + tid  # today's schedule member
    return tid, m, rk, str(now)


def batch(r, layout, n):
    ts = [task() for _ in range(n)]
    if layout in ('today', 'nopend'):
        args = ['omniq:{ns:', 'omniq:ns:loc:', '1', str(86400 * 10**6), str(seq[0]),
                'inst', 'omniq:ns:wake', str(n)]
        for tid, m, rk, due in ts:
            args += [tid, REC, m, rk, due]
        args += ['1', 'q', str(n), '0']
        res = r.eval(SCRIPTS[layout], 1, 'omniq:{ns}:queues', *args)
        assert res[0] == b'ok', res
        return
    if layout == 'multi':
        p = r.pipeline(transaction=True)
        p.hset('omniq:ns:loc', mapping={tid: 'q' for tid, _, _, _ in ts})
        p.hset('omniq:{ns:q}:d', mapping={tid: m.encode() + b'\n' + REC for tid, m, _, _ in ts})
        p.zadd('omniq:{ns:q}:sched', {rk: int(due) for _, _, rk, due in ts})
        p.hincrby('omniq:{ns:q}:n', 'pending', n)
        p.execute()
        return
    args = [str(n), 'q']
    for tid, m, rk, due in ts:
        if layout == 'v2':
            args += [tid, REC, m, rk, due]
        else:
            args += [tid, m.encode() + b'\n' + REC, rk, due]
    assert r.eval(SCRIPTS[layout], 0, *args) == b'ok'


def measure(layout, batches=10, n=1000):
    for f in glob.glob('/tmp/omniq-cg.out.*'):
        os.remove(f)
    server = subprocess.Popen(
        ['valgrind', '--tool=callgrind', '--callgrind-out-file=/tmp/omniq-cg.out.%p',
         'redis-server', '--port', str(PORT), '--save', '', '--appendonly', 'no'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=PORT)
    for _ in range(120):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.5)
    batch(r, layout, 10)  # loads the script
    ctl = ['callgrind_control']
    subprocess.run(ctl + ['-z', str(server.pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    for _ in range(batches):
        batch(r, layout, n)
    subprocess.run(ctl + ['-d', str(server.pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    mem = r.info('memory')['used_memory']
    r.shutdown(nosave=True)
    server.wait()
    dump = sorted(glob.glob('/tmp/omniq-cg.out.*.*'))[-1]
    total = next(int(l.split()[1]) for l in open(dump) if l.startswith(('summary:', 'totals:')))
    tasks = batches * n
    print('%-10s %7d instructions per task, %5d bytes of used_memory per task'
          % (layout, total // tasks, mem // (tasks + 10)))


if __name__ == '__main__':
    for layout in sys.argv[1:] or list(SCRIPTS):
        measure(layout)

#!/usr/bin/env bash
# Starts a local 3-master Redis Cluster on 127.0.0.1:7000-7002 (no persistence) for the
# Redis backend's cluster tests; does nothing when it is already up. Idempotent.
set -euo pipefail

PORTS=(7000 7001 7002)
DIR="${OMNIQ_REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/omniq-redis-cluster}"

cluster_ok() {
  redis-cli -h 127.0.0.1 -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-cluster: redis-server is not installed" >&2
  exit 1
fi
if cluster_ok; then
  exit 0
fi

# Closes every descriptor this shell inherited beyond stdio (but bash's own script
# descriptor, 255), so that the daemons started from it keep none of the caller's open:
# a `flock` held around a CI run would otherwise stay held as long as the cluster lives.
close_inherited_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ]; then
      eval "exec $fd>&-" 2>/dev/null || true
    fi
  done
}

mkdir -p "$DIR"
for p in "${PORTS[@]}"; do
  if ! redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1; then
    # A node that is not running starts from scratch (old cluster state would clash).
    rm -f "$DIR/nodes-$p.conf"
    (
      close_inherited_fds
      exec redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$DIR/nodes-$p.conf" --cluster-node-timeout 5000 \
        --daemonize yes --save "" --appendonly no --dir "$DIR" \
        --logfile "$DIR/redis-$p.log"
    )
  fi
done
for p in "${PORTS[@]}"; do
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
done

# Nodes that are up but hold no slots (fresh) are joined into a cluster.
slots=$(redis-cli -h 127.0.0.1 -p "${PORTS[0]}" cluster info | awk -F: '/^cluster_slots_assigned/ {print $2}' | tr -d '\r')
if [ "${slots:-0}" = "0" ]; then
  for p in "${PORTS[@]}"; do redis-cli -h 127.0.0.1 -p "$p" flushall >/dev/null; done
  redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002 \
    --cluster-replicas 0 --cluster-yes >/dev/null
fi

for _ in $(seq 1 100); do
  if cluster_ok; then
    echo "redis-cluster: up on 127.0.0.1:${PORTS[0]}-${PORTS[2]}"
    exit 0
  fi
  sleep 0.1
done
echo "redis-cluster: the cluster did not reach cluster_state:ok" >&2
exit 1

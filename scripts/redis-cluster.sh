#!/usr/bin/env bash
# A local Redis Cluster for trying seckill on one: six redis-server processes on 127.0.0.1
# (three primaries, three replicas), nothing kept on disk but their cluster state, in
# /tmp/seckill-redis-cluster. Usage: scripts/redis-cluster.sh start|stop|status [first port]
# (default 7000: ports 7000-7005, and their cluster bus ports 17000-17005).
# Then: SECKILL__REDIS__MODE=cluster SECKILL__REDIS__URL=redis://127.0.0.1:7000,redis://127.0.0.1:7001 make demo
set -euo pipefail
action=${1:-status}
first=${2:-7000}
dir=/tmp/seckill-redis-cluster
ports=$(seq "$first" $((first + 5)))
say() { printf '[redis-cluster] %s\n' "$*"; }
command -v redis-server >/dev/null || { say "redis-server not found: run scripts/deps.sh redis"; exit 1; }

healthy() {
  redis-cli -p "$first" cluster info 2>/dev/null | grep -q 'cluster_state:ok'
}

case "$action" in
  start)
    if healthy; then say "already running on ports $first-$((first + 5))"; exit 0; fi
    mkdir -p "$dir"
    for port in $ports; do
      rm -f "$dir/nodes-$port.conf"
      redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
        --cluster-enabled yes --cluster-node-timeout 2000 \
        --cluster-config-file "$dir/nodes-$port.conf" --dir "$dir" \
        --save "" --appendonly no --logfile "$dir/redis-$port.log" --pidfile "$dir/redis-$port.pid"
    done
    for port in $ports; do
      for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    # shellcheck disable=SC2046
    redis-cli --cluster create $(for port in $ports; do printf '127.0.0.1:%s ' "$port"; done) \
      --cluster-replicas 1 --cluster-yes >/dev/null
    replicas() { redis-cli -p "$first" cluster nodes | grep -c slave || true; }
    for _ in $(seq 100); do healthy && [ "$(replicas)" -eq 3 ] && break; sleep 0.2; done
    healthy && [ "$(replicas)" -eq 3 ] || { say "the cluster did not become ok; see $dir/*.log"; exit 1; }
    say "ready: SECKILL__REDIS__MODE=cluster SECKILL__REDIS__URL=redis://127.0.0.1:$first,redis://127.0.0.1:$((first + 1)),redis://127.0.0.1:$((first + 2))"
    ;;
  stop)
    for port in $ports; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
    rm -rf "$dir"
    say "stopped"
    ;;
  status)
    if healthy; then
      redis-cli -p "$first" cluster nodes | awk '{print $2, $3, $9}'
    else
      say "not running on port $first"; exit 1
    fi
    ;;
  *) say "usage: $0 start|stop|status [first port]"; exit 2 ;;
esac

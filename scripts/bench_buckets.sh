#!/usr/bin/env bash
# `make bench-buckets`: one hot SKU on a local Redis Cluster (three primaries, three replicas),
# the same closed-loop accept load with its sale in one stock bucket and in BUCKETS buckets, and
# where the cluster's CPU went, per primary (from /proc). This machine cannot show the rate a
# hot SKU reaches past one Redis core (the generator, the stack and the six Redis processes share
# its cores); what it shows, steadily, is how much of the SKU's Redis work one primary carries.
#
# Usage: make bench-buckets        RUNS=5 SECS=10 BUCKETS=12 scripts/bench_buckets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-8}
BUCKETS=${BUCKETS:-12}
CONNS=${CONNS:-64}
PORT=${PORT:-7100}
out=target/bench-buckets
rm -rf "$out"
mkdir -p "$out"
export RUST_BACKTRACE=0

cargo build --release -q -p flash-sim --bin seckill-sim
sim=target/release/seckill-sim
scripts/redis-cluster.sh start "$PORT"
export SECKILL__REDIS__MODE=cluster
export SECKILL__REDIS__URL="redis://127.0.0.1:$PORT,redis://127.0.0.1:$((PORT + 1)),redis://127.0.0.1:$((PORT + 2))"
export SECKILL__GATEWAY__PER_USER_RATE_PER_SEC=0
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS seckill_bench_buckets" \
  -c "CREATE DATABASE seckill_bench_buckets" >/dev/null
export SECKILL__DATABASE__URL=postgres://postgres@127.0.0.1:5432/seckill_bench_buckets

# shellcheck source=scripts/bench_stack.sh
source scripts/bench_stack.sh
cleanup() {
  stop_stack
  scripts/redis-cluster.sh stop "$PORT" >/dev/null || true
}
trap cleanup EXIT
start_stack

primaries=$(redis-cli -p "$PORT" cluster nodes | awk '$3 ~ /master/ {split($2, a, "[:@]"); print a[2]}' | sort)
primary_ticks() {
  for port in $primaries; do
    printf '%s:%s ' "$port" "$(ticks "$(cat /tmp/seckill-redis-cluster/redis-$port.pid)")"
  done
}
for run in $(seq "$RUNS"); do
  for buckets in 1 "$BUCKETS"; do
    before=$(primary_ticks)
    "$sim" load --url "$gateway" --admin-url "$admin" --create-sales 1 --buckets "$buckets" \
      --duration "$SECS" --connections "$CONNS" --quiet --output "$out/run$run-b$buckets.json" >/dev/null
    after=$(primary_ticks)
    echo "$buckets $run $before| $after" >> "$out/ticks.txt"
    echo "run $run, $buckets bucket(s): done"
  done
done
python3 - "$out" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
out, hz = sys.argv[1], int(sys.argv[2])
rows = {}
for line in open(f"{out}/ticks.txt"):
    head, after = line.split("|")
    buckets, run, *before = head.split()
    before = dict(p.split(":") for p in before)
    after = dict(p.split(":") for p in after.split())
    used = {port: (int(after[port]) - int(before[port])) * 1e6 / hz for port in before}
    report = json.load(open(f"{out}/run{run}-b{buckets}.json"))
    accepted = report["outcomes"].get("accepted", {}).get("count", 0)
    total = sum(used.values())
    rows.setdefault(int(buckets), []).append({
        "rate": accepted / report["elapsed_secs"],
        "busiest_share": max(used.values()) / total if total else 0,
        "cluster_us": total / accepted if accepted else 0,
        "busiest_us": max(used.values()) / accepted if accepted else 0,
    })
m = statistics.median
print("| buckets | runs | accepted/s (median) | busiest primary's share of the Redis CPU | Redis CPU µs per order, all primaries | busiest primary µs per order |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
for buckets, runs in sorted(rows.items()):
    print(f"| {buckets} | {len(runs)} | {m(r['rate'] for r in runs):,.0f} "
          f"| {m(r['busiest_share'] for r in runs):.0%} | {m(r['cluster_us'] for r in runs):.1f} "
          f"| {m(r['busiest_us'] for r in runs):.1f} |")
PY

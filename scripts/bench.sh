#!/usr/bin/env bash
# `make bench`: the gateway's paths under the project's own load generator (`seckill-sim load`),
# next to ceilings measured in the same run with the same generator, then the report.
#
# One `seckill-sim stack` (gateway, worker, replayer, embedded broker; PostgreSQL; the local
# Redis) serves every scenario. Each scenario runs RUNS times; the runs of the scenarios are
# interleaved (a, b, c, a, b, c, ...) so that the machine's drift spreads over all of them.
# - ceiling: GET /healthz (the gateway's trivial handler), closed loop, CONNS connections;
# - sold-out path: a sale of stock 0, same connections;
# - accept path: a sale of a billion units, one hot SKU, and 50 SKUs;
# - ceiling: the real reserve script under redis-benchmark (EVALSHA, random buyers);
# - accept path, open loop at half of its closed-loop median: the latency a buyer sees;
# - overload: open loop at three times the accept path's median, 1,024 connections;
# - Redis round trips: `redis-cli MONITOR` over 200 sequential requests, accept and sold out;
# - end to end: `seckill-sim demo`, 100,000 buyers for 10,000 units.
# For every load run, the CPU time the stack process and Redis spent (from /proc) is kept.
# scripts/bench_report.py turns it all into the generated part of docs/benchmarks.md and
# docs/bench/chart.svg.
#
# Usage: make bench        RUNS=5 SECS=10 scripts/bench.sh        SKIP_DEMO=1 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-8}
CONNS=${CONNS:-128}
out=target/bench
rm -rf "$out"
mkdir -p "$out"
export RUST_BACKTRACE=0

cargo build --release -q -p flash-sim --bin seckill-sim
sim=target/release/seckill-sim
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(date -u +%Y-%m-%dT%H:%MZ)" | tee "$out/machine.txt"
git rev-parse --short HEAD > "$out/commit.txt" 2>/dev/null || echo unknown > "$out/commit.txt"

# The worker writes to PostgreSQL, as in production.
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS seckill_bench" \
  -c "CREATE DATABASE seckill_bench" >/dev/null
export SECKILL__DATABASE__URL=postgres://postgres@127.0.0.1:5432/seckill_bench
# Many buyers share few tokens here; the per-buyer limit guards a real shop.
export SECKILL__GATEWAY__PER_USER_RATE_PER_SEC=0
# Low enough that the overload scenario's 1,024 connections reach it.
export SECKILL__GATEWAY__MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-256}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
redis_pid=$(redis-cli info server | awk -F: '/^process_id/ {print $2}' | tr -d '\r')

stack=""
start_stack() {
  "$sim" stack > "$out/stack.txt" 2>&1 &
  stack=$!
  gateway=""
  for _ in $(seq 300); do
    gateway=$(awk '/^gateway / {print $2}' "$out/stack.txt" || true)
    [ -n "$gateway" ] && break
    sleep 0.1
  done
  [ -n "$gateway" ] || { echo "the stack did not start:"; cat "$out/stack.txt"; exit 1; }
}
stop_stack() {
  [ -n "$stack" ] || return 0
  kill -TERM "$stack" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$stack" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$stack" 2>/dev/null || true
  wait "$stack" 2>/dev/null || true
  stack=""
}
trap stop_stack EXIT

# load NAME ARGS...: one run of `seckill-sim load`, its report and the CPU it cost.
load() {
  local name=$1; shift
  local s0 r0
  s0=$(ticks "$stack"); r0=$(ticks "$redis_pid")
  "$sim" load --url "$gateway" --quiet --output "$out/$name.json" "$@" > "$out/$name.txt"
  echo "$(( $(ticks "$stack") - s0 )) $(( $(ticks "$redis_pid") - r0 )) $(getconf CLK_TCK)" > "$out/$name.cpu"
  printf '  %-22s %s\n' "$name" "$(head -n 1 "$out/$name.txt")"
}

start_stack
echo "stack: gateway $gateway (pid $stack), redis pid $redis_pid"
# Let the stack's connections settle.
"$sim" load --url "$gateway" --get /healthz --duration 2 --quiet >/dev/null

echo
echo "== closed loop, $CONNS connections, ${SECS} s each, $RUNS runs interleaved"
for run in $(seq 1 "$RUNS"); do
  load "healthz-$run" --get /healthz --connections "$CONNS" --duration "$SECS"
  load "sold_out-$run" --create-sales 1 --stock 0 --connections "$CONNS" --duration "$SECS"
  load "accept-$run" --create-sales 1 --connections "$CONNS" --duration "$SECS"
  load "accept50-$run" --create-sales 50 --connections "$CONNS" --duration "$SECS"
done

echo
echo "== ceiling: the real reserve script under redis-benchmark (50 clients, EVALSHA, random buyers)"
script=$(cat crates/stock/src/lua/record.lua crates/stock/src/lua/reserve.lua)
sha=$(redis-cli SCRIPT LOAD "$script")
base="seckill-bench:{ceiling}"
keys=("$base:sale" "$base:stock" "$base:buyers" "$base:idem" "$base:resv" "$base:pending" "$base:outbox")
entry='{"v":1,"order_id":"ceiling.0","user_id":"u","sku_id":"ceiling","quantity":1,"idempotency_key":"k","requested_at":"2026-01-01T00:00:00Z"}'
for run in $(seq 1 "$RUNS"); do
  redis-cli DEL "${keys[@]}" >/dev/null
  redis-cli HSET "$base:sale" starts_at 0 ends_at 99999999999999 per_user_limit 1000 reserved 0 initial 1000000000 >/dev/null
  redis-cli SET "$base:stock" 1000000000 >/dev/null
  r0=$(ticks "$redis_pid")
  redis-benchmark -n 200000 -c 50 -r 1000000000 --csv EVALSHA "$sha" 7 "${keys[@]}" \
    "buyer-__rand_int__" "key-__rand_int__" "ceiling.__rand_int__" 1 "$(date +%s%3N)" "$entry" \
    | tail -n 1 > "$out/reserve_ceiling-$run.csv"
  echo "$(( $(ticks "$redis_pid") - r0 )) 200000 $(getconf CLK_TCK)" > "$out/reserve_ceiling-$run.cpu"
  printf '  %-22s %s\n' "reserve_ceiling-$run" "$(awk -F, '{print $(NF-6)}' "$out/reserve_ceiling-$run.csv" | tr -d '"') calls/s"
done
redis-cli DEL "${keys[@]}" >/dev/null

accept_median=$(python3 scripts/bench_report.py median-throughput "$out" accept)
echo
echo "== open loop: accept path at half of its median ($accept_median/s), overload at three times"
for run in $(seq 1 "$RUNS"); do
  load "accept_half-$run" --create-sales 1 --connections "$CONNS" --duration "$SECS" \
    --rate "$(python3 -c "print(round($accept_median / 2))")"
done
load "overload-1" --create-sales 1 --connections 1024 --duration "$SECS" \
  --rate "$(python3 -c "print(round($accept_median * 3))")"

echo
echo "== Redis round trips: MONITOR over 200 sequential requests"
for path in accept sold_out; do
  stock_arg=(); [ "$path" = sold_out ] && stock_arg=(--stock 0)
  prefix="bench-monitor-$path-$(date +%s)"
  # The sale is put on sale before MONITOR starts: only the buyers' requests are counted.
  "$sim" load --url "$gateway" --quiet --create-sales 1 --sale-prefix "$prefix" \
    "${stock_arg[@]}" --requests 0 > /dev/null
  timeout 15 redis-cli MONITOR > "$out/monitor-$path.txt" &
  monitor=$!
  sleep 0.5
  "$sim" load --url "$gateway" --quiet --sku "$prefix-0" --requests 200 \
    --connections 1 --output "$out/monitor-$path.json" > /dev/null
  # The worker's claims and the batched marks come after the answers.
  sleep 3
  kill "$monitor" 2>/dev/null || true
  wait "$monitor" 2>/dev/null || true
done
stop_stack

if [ -z "${SKIP_DEMO:-}" ]; then
  echo
  echo "== end to end: seckill-sim demo, 100,000 buyers for 10,000 units (PostgreSQL), $RUNS runs"
  for run in $(seq 1 "$RUNS"); do
    "$sim" demo --stock 10000 --users 100000 --requests 100000 --per-user-limit 1 \
      --seed "$run" --json > "$out/demo-$run.txt" 2>&1 || true
    grep -E "^throughput|PASS|FAIL" "$out/demo-$run.txt" | sed 's/^/  /' || tail -n 5 "$out/demo-$run.txt"
  done
fi

echo
python3 scripts/bench_report.py write "$out" docs/benchmarks.md docs/bench/chart.svg

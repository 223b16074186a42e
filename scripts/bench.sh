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
# - worker: a backlog of DRAIN orders of one SKU (queued by a stack without its worker) drained
#   into PostgreSQL by `seckill-order-worker` started on its own, next to pgbench running the
#   worker's own transaction at the worker's batch size, one client (one hot SKU is one
#   partition, written one batch at a time);
# - end to end: `seckill-sim demo`, 100,000 buyers for 10,000 units;
# - the waiting room: `seckill-sim room --compare` (polite buyers and greedy clients, load
#   shedding alone then behind a room), written by scripts/bench_room.py;
# - abuse: `seckill-sim hostile` (honest buyers under each attack against a clean round) and
#   `seckill-sim pow` (solving a challenge against checking it), written by scripts/bench_abuse.py.
# For every load run, the CPU time the stack process (in all, and by thread group) and Redis
# spent (from /proc) is kept.
# scripts/bench_report.py turns it all into the generated part of docs/benchmarks.md and
# docs/bench/chart.svg.
#
# Usage: make bench        RUNS=5 SECS=10 scripts/bench.sh        SKIP_DEMO=1 scripts/bench.sh
#        ONLY="worker" scripts/bench.sh   (groups: http, worker, demo, room, abuse; the report of a part goes
#                                          to target/bench/benchmarks.md, not docs/)
set -euo pipefail
cd "$(dirname "$0")/.."
# want GROUP: whether ONLY (unset: all) names the group of scenarios.
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
for group in ${ONLY:-}; do
  case $group in
    http | worker | demo | room | abuse) ;;
    *) echo "ONLY: unknown group '$group' (groups: http, worker, demo, room, abuse, separated by spaces)"; exit 2 ;;
  esac
done
RUNS=${RUNS:-3}
SECS=${SECS:-8}
# The embedded broker keeps at most 5 MiB per partition: a larger backlog loses its oldest orders.
DRAIN=${DRAIN:-10000}
CONNS=${CONNS:-128}
out=target/bench
rm -rf "$out"
mkdir -p "$out"
export RUST_BACKTRACE=0

cargo build --release -q -p flash-sim --bin seckill-sim -p order-worker --bin seckill-order-worker
sim=target/release/seckill-sim
echo "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(date -u +%Y-%m-%dT%H:%MZ)" | tee "$out/machine.txt"
git rev-parse --short HEAD > "$out/commit.txt" 2>/dev/null || echo unknown > "$out/commit.txt"

# The worker writes to PostgreSQL, as in production.
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS seckill_bench" \
  -c "CREATE DATABASE seckill_bench" >/dev/null
export SECKILL__DATABASE__URL=postgres://postgres@127.0.0.1:5432/seckill_bench
# Many buyers share few tokens here; the per-buyer limit guards a real shop.
export SECKILL__GATEWAY__PER_USER_RATE_PER_SEC=0
# Low enough that the overload scenario's 1,024 connections reach it.
export SECKILL__GATEWAY__MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-256}

# shellcheck source=scripts/bench_stack.sh
source scripts/bench_stack.sh
redis_pid=$(redis-cli info server | awk -F: '/^process_id/ {print $2}' | tr -d '\r')

worker=""
cleanup() {
  [ -z "$worker" ] || kill -TERM "$worker" 2>/dev/null || true
  stop_stack
}
trap cleanup EXIT

# load NAME ARGS...: one run of `seckill-sim load`, its report and the CPU it cost.
load() {
  local name=$1; shift
  local s0 r0
  python3 scripts/bench_report.py thread-ticks "$stack" > "$out/$name.threads"
  python3 scripts/bench_report.py fetch "$admin/metrics" > "$out/$name.metrics0"
  s0=$(ticks "$stack"); r0=$(ticks "$redis_pid")
  "$sim" load --url "$gateway" --admin-url "$admin" --quiet --output "$out/$name.json" "$@" > "$out/$name.txt"
  echo "$(( $(ticks "$stack") - s0 )) $(( $(ticks "$redis_pid") - r0 )) $(getconf CLK_TCK)" > "$out/$name.cpu"
  python3 scripts/bench_report.py fetch "$admin/metrics" > "$out/$name.metrics1"
  python3 scripts/bench_report.py thread-ticks "$stack" >> "$out/$name.threads"
  printf '  %-22s %s\n' "$name" "$(head -n 1 "$out/$name.txt")"
  # The next run must not share the cores with the worker writing this one's orders.
  python3 scripts/bench_report.py wait-drained "$worker_metrics" > "$out/$name.drain"
}

if want http; then
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
  script=$("$sim" script reserve)
  sha=$(redis-cli SCRIPT LOAD "$script")
  base="seckill-bench:{ceiling}"
  keys=("$base:sale" "$base:stock" "$base:buyers" "$base:idem" "$base:resv" "$base:pending" "$base:outbox")
  entry='{"v":1,"order_id":"ceiling.0","user_id":"u","sku_id":"ceiling","quantity":1,"idempotency_key":"k","requested_at":"2026-01-01T00:00:00Z"}'
  for run in $(seq 1 "$RUNS"); do
    redis-cli DEL "${keys[@]}" >/dev/null
    redis-cli HSET "$base:sale" starts_at 0 ends_at 99999999999999 per_user_limit 1000 reserved 0 initial 1000000000 >/dev/null
    redis-cli SET "$base:stock" 1000000000 >/dev/null
    # The arguments the gateway sends for a group of one order: the sale's number of stock
    # buckets, then the order (buyer, key, id, quantity, now, its message, whether the buyer
    # holds an admission ticket). A ceiling whose calls do not reserve would measure nothing:
    # one call must answer `accepted`.
    now=$(date +%s%3N)
    first=$(redis-cli EVALSHA "$sha" 7 "${keys[@]}" 1 "buyer-check" "key-check" "ceiling.check" 1 "$now" "$entry" 0 | head -n 1)
    [ "$first" = accepted ] || { echo "the reserve script answered '$first', not accepted"; exit 1; }
    r0=$(ticks "$redis_pid")
    redis-benchmark -n 200000 -c 50 -r 1000000000 --csv EVALSHA "$sha" 7 "${keys[@]}" \
      1 "buyer-__rand_int__" "key-__rand_int__" "ceiling.__rand_int__" 1 "$now" "$entry" 0 \
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
    "$sim" load --url "$gateway" --admin-url "$admin" --quiet --create-sales 1 --sale-prefix "$prefix" \
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
fi

if want worker; then
  echo
  echo "== worker: a backlog of $DRAIN orders of one SKU drained into PostgreSQL, and pgbench on its SQL, $RUNS runs"
  # The CPU ticks of the local PostgreSQL: its processes now, and those that have exited (the
  # postmaster's reaped children: pgbench's backend is gone by the time it is read). 0 when
  # PostgreSQL is not a local process (local_postgres fails; the report then leaves its CPU out).
  local_postgres() { pgrep -x postgres >/dev/null; }
  postgres_ticks() {
    local total=0 pid postmaster
    postmaster=$(pgrep -o -x postgres) || { echo 0; return 0; }
    for pid in $(pgrep -x postgres); do total=$(( total + $(ticks "$pid" 2>/dev/null || echo 0) )); done
    echo $(( total + $(awk '{print $16 + $17}' "/proc/$postmaster/stat" 2>/dev/null || echo 0) ))
  }
  # cpu_since "P0 R0 W0": PostgreSQL's, Redis's and the worker's ticks since those readings.
  cpu_since() {
    local p0 r0 w0
    read -r p0 r0 w0 <<< "$1"
    echo "$(( $(postgres_ticks) - p0 )) $(( $(ticks "$redis_pid") - r0 )) $(( $(ticks "$worker") - w0 ))"
  }
  free_port() { python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
  for run in $(seq 1 "$RUNS"); do
    start_stack --without-worker
    # pgbench's sale (the stack has migrated the database by now).
    psql -h 127.0.0.1 -U postgres -d seckill_bench -qc "INSERT INTO sales (sku_id, initial_stock, stock,
      per_user_limit, starts_at, ends_at, created_at, updated_at) VALUES ('pgbench-sku', 1000000000,
      1000000000, 1000, now(), now() + interval '1 day', now(), now()) ON CONFLICT (sku_id) DO NOTHING" >/dev/null
    "$sim" load --url "$gateway" --admin-url "$admin" --quiet --create-sales 1 --requests "$DRAIN" > "$out/drain-$run-load.txt"
    port=$(free_port)
    # Every drain writes into an empty orders table: the rows of earlier scenarios and runs
    # (pgbench leaves half a million) would make each run's table larger than the last, and
    # the worker's start reads every order awaiting payment once (its gauges). Autovacuum's
    # work is done now, not while CPU is counted.
    psql -h 127.0.0.1 -U postgres -d seckill_bench -qc "TRUNCATE orders" -c "VACUUM ANALYZE" >/dev/null
    since=$(psql -h 127.0.0.1 -U postgres -d seckill_bench -qAtc "SELECT now()")
    # Their backends exit after psql does: let them go before PostgreSQL's CPU is read.
    sleep 1
    started="$(postgres_ticks) $(ticks "$redis_pid") 0"
    SECKILL__KAFKA__BOOTSTRAP_SERVERS="$kafka" SECKILL__HTTP__OPS_PORT="$port" SECKILL__LOG__FILTER=warn \
      target/release/seckill-order-worker > "$out/drain-$run-worker.log" 2>&1 &
    worker=$!
    python3 scripts/bench_report.py wait-written "http://127.0.0.1:$port/metrics"
    # CPU of the drain: PostgreSQL, Redis and the worker (its start included) until 2 s after the
    # last batch, less what the same 2 s cost once more with nothing to write (the expirer's and
    # sweeper's rounds, the /metrics readings, the broker's heartbeats).
    drained=$(cpu_since "$started")
    idle_from="$(postgres_ticks) $(ticks "$redis_pid") $(ticks "$worker")"
    sleep 2
    idle=$(cpu_since "$idle_from")
    if local_postgres; then
      read -r dp dr dw <<< "$drained"; read -r ip ir iw <<< "$idle"
      echo "$(( dp - ip )) $(( dr - ir )) $(( dw - iw )) $(getconf CLK_TCK)" > "$out/drain-$run.cpu"
    fi
    python3 scripts/bench_report.py drain-rate "$SECKILL__DATABASE__URL" "$since" > "$out/drain-$run.rate"
    python3 scripts/bench_report.py worker-batches "http://127.0.0.1:$port/metrics" > "$out/drain-$run.batches"
    kill -TERM "$worker"; wait "$worker" 2>/dev/null || true
    worker=""
    stop_stack
    batch=$(awk '{printf "%d", ($3 > 0 ? $1 / $3 : 0) + 0.5}' "$out/drain-$run.batches")
    [ "$batch" -gt 0 ] || { echo "the worker wrote nothing: see $out/drain-$run-worker.log"; exit 1; }
    python3 scripts/bench_report.py pgbench-script "$batch" > "$out/pgbench-$run.sql"
    psql -h 127.0.0.1 -U postgres -d seckill_bench -qc "VACUUM ANALYZE" >/dev/null
    sleep 1
    p0=$(postgres_ticks)
    pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 1 -T "$SECS" -f "$out/pgbench-$run.sql" seckill_bench \
      2>&1 | grep -E "^tps|failed transactions|transactions actually processed" > "$out/pgbench-$run.txt"
    ! local_postgres || echo "$(( $(postgres_ticks) - p0 )) $(getconf CLK_TCK)" > "$out/pgbench-$run.cpu"
    echo "$batch" > "$out/pgbench-$run.batch"
    printf '  run %s: worker %s orders in %s s (%s/s), batches of %s; pgbench %s\n' "$run" \
      $(cat "$out/drain-$run.rate") "$batch" "$(grep ^tps "$out/pgbench-$run.txt" | awk '{print $3}') tps"
  done
fi

if want demo && [ -z "${SKIP_DEMO:-}" ]; then
  echo
  echo "== end to end: seckill-sim demo, 100,000 buyers for 10,000 units (PostgreSQL), $RUNS runs"
  for run in $(seq 1 "$RUNS"); do
    "$sim" demo --stock 10000 --users 100000 --requests 100000 --per-user-limit 1 \
      --pay-share 0 --late-payers 0 --latecomers 0 \
      --seed "$run" --json > "$out/demo-$run.txt" 2> "$out/demo-$run.log" || true
    grep -E "^throughput|PASS|FAIL" "$out/demo-$run.txt" | sed 's/^/  /' || tail -n 5 "$out/demo-$run.txt"
  done
fi

if want room; then
  echo
  echo "== the waiting room: seckill-sim room --compare, $RUNS runs"
  for run in $(seq 1 "$RUNS"); do
    "$sim" room --compare --output "$out/room-$run.json" > "$out/room-$run.txt" 2> "$out/room-$run.log" || true
    grep -E "^(PASS|FAIL)" "$out/room-$run.txt" | sed 's/^/  /' || tail -n 5 "$out/room-$run.txt"
    # The order: a FIFO room, 500 buyers arriving 2 ms apart, admitted at 200 per second.
    "$sim" room --mode fifo --rate 200 --polite 500 --greedy 0 --stock 500 --pre-queue-secs 0 \
      --stagger-ms 2 --poll-cost-secs 0 --output "$out/order-$run.json" > "$out/order-$run.txt" 2>&1 || true
    grep -E "^rank correlation" "$out/order-$run.txt" | sed 's/^/  /' || tail -n 5 "$out/order-$run.txt"
  done
fi

if want abuse; then
  echo
  echo "== abuse: seckill-sim hostile, $RUNS runs; seckill-sim pow"
  for run in $(seq 1 "$RUNS"); do
    "$sim" hostile --output "$out/hostile-$run.json" > "$out/hostile-$run.txt" 2> "$out/hostile-$run.log" || true
    grep -E "^(PASS|FAIL)" "$out/hostile-$run.txt" | sed 's/^/  /' || tail -n 5 "$out/hostile-$run.txt"
  done
  for max in 50000 200000; do
    "$sim" pow --max-number "$max" --runs 100 --json > "$out/pow-$max.json"
    printf '  pow %s\n' "$("$sim" pow --max-number "$max" --runs 20)"
  done
fi

echo
if [ -z "${ONLY:-}" ]; then
  python3 scripts/bench_report.py write "$out" docs/benchmarks.md docs/bench/chart.svg
  python3 scripts/bench_room.py "$out" docs/benchmarks.md
  python3 scripts/bench_abuse.py "$out" docs/benchmarks.md
else
  # Part of the scenarios: the report goes to target/bench, docs/benchmarks.md stays as it is.
  cp docs/benchmarks.md "$out/benchmarks.md"
  want room || want abuse || python3 scripts/bench_report.py write "$out" "$out/benchmarks.md" "$out/chart.svg"
  python3 scripts/bench_room.py "$out" "$out/benchmarks.md"
  python3 scripts/bench_abuse.py "$out" "$out/benchmarks.md"
fi

#!/usr/bin/env bash
# `make bench`: the end-to-end demo, RUNS times (default 3) on the release build, with the median
# of its throughput and latency, next to two ceilings measured in the same run on the same
# machine:
# - Redis: redis-benchmark running a trivial Lua script (EVAL "return 1" 0) against the local
#   Redis, the most any reserve-per-request path could reach here;
# - HTTP: wrk (128 connections, like the demo's crowd) against the gateway's trivial `/healthz`
#   (same actix server and middleware, no Redis, no Kafka), the most the gateway's HTTP layer
#   answers here while sharing the cores with its load generator.
# Prints a Markdown table row per run and the medians, for docs/benchmarks.md.
#
# Usage: scripts/bench.sh            RUNS=5 scripts/bench.sh            ARGS="--requests 50000" scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
ARGS=${ARGS:-}
out=target/bench
mkdir -p "$out"

cargo build --release -q -p flash-sim --bin seckill-sim
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(date -u +%Y-%m-%dT%H:%MZ)"

echo
echo "== ceiling: redis-benchmark EVAL \"return 1\" 0 (50 clients, 200k calls), same run"
redis-benchmark -q -n 200000 -c 50 EVAL "return 1" 0 | tr "\r" "\n" | grep -v "^ *$" | tail -n 1 | tee "$out/redis-ceiling.txt"

echo
echo "== ceiling: wrk -t2 -c128 -d10s against the gateway's /healthz (seckill-sim stack), same run"
command -v wrk >/dev/null || { echo "wrk is missing: run 'make bench' or 'scripts/deps.sh bench'"; exit 1; }
: > "$out/stack.txt"
target/release/seckill-sim stack > "$out/stack.txt" 2>&1 &
stack=$!
trap 'kill "$stack" 2>/dev/null || true' EXIT
gateway=""
for _ in $(seq 300); do
  gateway=$(awk '/^gateway / {print $2}' "$out/stack.txt" || true)
  [ -n "$gateway" ] && break
  sleep 0.1
done
[ -n "$gateway" ] || { echo "the stack did not start:"; cat "$out/stack.txt"; exit 1; }
wrk -t2 -c128 -d10s --latency "$gateway/healthz" > "$out/http-ceiling.txt"
# Socket errors or non-2xx answers would make the ceiling meaningless: show them.
grep -E "Socket errors|Non-2xx" "$out/http-ceiling.txt" || true
awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
     END {if (rps == "") exit 1
          printf "GET /healthz: %s requests per second, p50=%s, p99=%s\n", rps, p50, p99}' "$out/http-ceiling.txt" \
  || { echo "wrk gave no figures:"; cat "$out/http-ceiling.txt"; exit 1; }
kill -TERM "$stack"
# The stack stops within its grace period (20 s by default); do not wait forever.
for _ in $(seq 300); do kill -0 "$stack" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$stack" 2>/dev/null || true
wait "$stack" 2>/dev/null || true
trap - EXIT

echo
echo "== end to end: seckill-sim demo $ARGS, $RUNS runs"
echo "| run | requests/s | p50 ms | p90 ms | p99 ms | max ms | verdict |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
for run in $(seq 1 "$RUNS"); do
  # shellcheck disable=SC2086
  target/release/seckill-sim demo --seed "$run" --json $ARGS > "$out/run-$run.txt" 2>&1 || true
  python3 - "$out/run-$run.txt" "$run" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
start = text.rfind("\n{")
v = json.loads(text[start:])
holds = all(v[k] == 0 for k in ("oversold", "duplicates", "lost", "conservation_gap", "bad_input_violations"))
l = v["latency_ms"]
print(f"| {sys.argv[2]} | {v['throughput']:.0f} | {l[0]:.2f} | {l[1]:.2f} | {l[2]:.2f} | {l[3]:.2f} | {'all hold' if holds else 'VIOLATED'} |")
PY
done | tee "$out/runs.md"
python3 - "$out/runs.md" <<'PY'
import statistics, sys
rows = [line.strip("|\n ").split("|") for line in open(sys.argv[1]) if line.startswith("| ")]
cols = list(zip(*[[float(c) for c in r[1:6]] for r in rows]))
m = [statistics.median(c) for c in cols]
print(f"| median of {len(rows)} | {m[0]:.0f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} | {m[4]:.2f} | |")
PY

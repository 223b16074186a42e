#!/usr/bin/env bash
# The HTTP fuzzer of `make test`: schemathesis (PyPI), driven by the gateway's own OpenAPI
# document, against a running `seckill-sim stack` (embedded broker, an SQLite file of its own,
# the local Redis under a prefix of its own). It generates requests for every route, with a
# buyer's token, an admin's token and a forged one, and fails on any 500, any answer the
# document does not describe (status, content type, body), and then on any unit reserved by a
# request that got no order: at rest, Redis and the database must account for every unit.
# Usage: scripts/fuzz.sh   (FUZZ_EXAMPLES=n per operation and run, default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[fuzz] %s\n' "$*"; }
examples=${FUZZ_EXAMPLES:-200}
out=target/fuzz
mkdir -p "$out"

venv=$out/venv
version=4.32.5
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $version"; then
  say "installing schemathesis $version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi

rm -f "$out/seckill.db" "$out/seckill.db-wal" "$out/seckill.db-shm"
export SECKILL__DATABASE__URL=""
export SECKILL__DATABASE__SQLITE_PATH="$out/seckill.db"
export SECKILL__REDIS__KEY_PREFIX="fuzz$$"
export SECKILL__GATEWAY__PER_USER_RATE_PER_SEC=0
export SECKILL__GATEWAY__PER_USER_READ_RATE_PER_SEC=0
export SECKILL__LOG__FILTER="error"
cargo build -q -p flash-sim --bin seckill-sim
./target/debug/seckill-sim stack > "$out/stack.out" 2> "$out/stack.log" &
stack=$!
stop_stack() {
  kill -TERM $stack 2>/dev/null || true
  for _ in $(seq 300); do kill -0 $stack 2>/dev/null || break; sleep 0.1; done
  kill -KILL $stack 2>/dev/null || true
  wait $stack 2>/dev/null || true
  redis-cli --scan --pattern "$SECKILL__REDIS__KEY_PREFIX*" 2>/dev/null \
    | xargs -r -n 500 redis-cli del > /dev/null 2>&1 || true
}
trap stop_stack EXIT
for _ in $(seq 600); do
  grep -q "Ctrl-C stops everything" "$out/stack.out" 2>/dev/null && break
  kill -0 $stack 2>/dev/null || { cat "$out/stack.log"; say "the stack did not start"; exit 1; }
  sleep 0.1
done
grep -q "Ctrl-C stops everything" "$out/stack.out" \
  || { cat "$out/stack.log"; say "the stack did not start within 60 s"; exit 1; }
gateway=$(awk '/^gateway /{print $2}' "$out/stack.out")
admin=$(awk '/^admin token /{print $3}' "$out/stack.out")
admin_api=$(awk '/^admin api /{print $3}' "$out/stack.out")
buyer=$(awk '/^buyer token /{print $3}' "$out/stack.out")
say "gateway $gateway"

# The sale the document's examples name, so that the examples reach a real sale.
"$venv/bin/python" scripts/fuzz_check.py --create "$admin_api" "$admin" phone-x

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection
# The coverage phase is left out: schemathesis 4.32.5 fails inside hypothesis on this machine's
# Python 3.11 while it builds negative values for some schemas (an AST recursion SystemError).
run() {
  local name=$1 base=$2; shift 2
  say "run: $name"
  "$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$gateway/openapi.json" --url "$base" --checks "$checks" \
    --phases examples,fuzzing --max-examples "$examples" --workers 2 \
    --suppress-health-check all --seed 42 --no-color \
    --report ndjson --report-dir "$out/$name" "$@" > "$out/$name.txt" 2>&1
  local status=$?
  sed -n '/SUMMARY/,$p' "$out/$name.txt" | grep -E "Selected|passed|failed|Error|error" | sed 's/^/    /'
  [ $status -eq 0 ] || sed -n '/FAILURES\|ERRORS/,/SUMMARY/p' "$out/$name.txt" | head -n 80
  return $status
}
export PYTHONPATH=scripts SCHEMATHESIS_HOOKS=fuzz_hooks
# The admin API is served on its own port (`http.admin_port`): its runs go there.
status=0
run buyer "$gateway" -H "Authorization: Bearer $buyer" --include-tag buyers --include-tag operations || status=1
run admin "$admin_api" -H "Authorization: Bearer $admin" --include-tag admin --include-tag ops || status=1
SECKILL_FUZZ_WEBHOOK_SECRET=$(awk '/^webhook_secret/{gsub(/"/, "", $3); print $3}' config/default.toml) \
  run signed-payments "$gateway" --include-tag payments || status=1
run forged "$gateway" -H "Authorization: Bearer a.forged.token" --exclude-tag admin --exclude-tag ops || status=1
run forged-admin "$admin_api" -H "Authorization: Bearer a.forged.token" --include-tag admin || status=1
run no-token "$gateway" --exclude-tag admin --exclude-tag ops || status=1
run no-token-admin "$admin_api" --include-tag admin || status=1

generated=$( (grep -hoE '[0-9]+ generated' "$out"/*.txt || true) | awk '{n += $1} END {print n + 0}')
say "$generated requests generated in all"
say "at rest: every unit reserved by the fuzzer's requests is accounted for"
"$venv/bin/python" scripts/fuzz_check.py "$admin_api" "$admin" phone-x || status=1
[ $status -eq 0 ] && say "passed" || say "FAILED (reports in $out)"
exit $status

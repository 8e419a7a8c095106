"""What the rendered overlays promise: probes, shutdown, security, stores, secrets, the webhook path.

.ci/deploy-check validates the same output against the Kubernetes schemas and checkov; these tests
hold the things no schema knows: that the manifests agree with the Dockerfile and with the bridge.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from conftest import Dockerfile  # the fixture's type; conftest is not imported at run time

ROOT = Path(__file__).resolve().parents[2]

Docs = list[dict[str, Any]]


def find(docs: Docs, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def the(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(docs: Docs) -> dict[str, Any]:
    spec: dict[str, Any] = the(docs, "Deployment", "bridge")["spec"]["template"]["spec"]
    return spec


def container(docs: Docs, name: str = "bridge") -> dict[str, Any]:
    (found,) = [c for c in pod_spec(docs)["containers"] if c["name"] == name]
    return found


def all_containers(docs: Docs) -> list[dict[str, Any]]:
    spec = pod_spec(docs)
    return [*spec.get("initContainers", []), *spec["containers"]]


def config(docs: Docs) -> dict[str, str]:
    """The bridge-config ConfigMap's data (its name carries a content hash)."""
    (found,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].startswith("bridge-config-")]
    data: dict[str, str] = found["data"]
    return data


def env_from_secret(c: dict[str, Any], name: str) -> tuple[str, str] | None:
    for var in c.get("env", []):
        if var["name"] == name and "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            return ref["name"], ref["key"]
    return None


def test_container_runs_the_images_command_on_its_port(docs: Docs, dockerfile: Dockerfile) -> None:
    """The manifests start what the Dockerfile's CMD starts, on the port it exposes."""
    bridge = container(docs)
    assert bridge["args"] == dockerfile.one("CMD").exec_form()
    (port,) = bridge["ports"]
    assert port == {"name": "http", "containerPort": int(dockerfile.one("EXPOSE").value), "protocol": "TCP"}


def test_every_container_uses_the_overlays_image(docs: Docs) -> None:
    """The overlay's images: entry reaches init containers too (a base-level one would not)."""
    images = {c["image"] for c in all_containers(docs)}
    assert len(images) == 1
    (image,) = images
    assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image), image
    assert not image.endswith(":latest")


def test_probes_startup_and_liveness_on_healthz_readiness_on_readyz(docs: Docs) -> None:
    """Liveness never depends on the store, so a database outage does not restart every pod."""
    bridge = container(docs)
    assert bridge["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert bridge["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert bridge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_grace_period_covers_the_pause_and_the_graceful_shutdown(docs: Docs) -> None:
    """preStop pause + BRIDGE_SHUTDOWN_TIMEOUT + 5 s to close must fit in the grace period."""
    spec = pod_spec(docs)
    command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = int(command[1])
    shutdown = float(config(docs)["BRIDGE_SHUTDOWN_TIMEOUT"])
    assert pause >= 3
    assert spec["terminationGracePeriodSeconds"] >= pause + shutdown + 5


def test_pods_are_locked_down(docs: Docs, dockerfile: Dockerfile) -> None:
    """Non-root (the image's uid), read-only root, no escalation, no capabilities, seccomp, no token."""
    spec = pod_spec(docs)
    uid, _, gid = dockerfile.one("USER", "runtime").value.partition(":")
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False  # no BRIDGE_PORT=tcp://... from a Service named bridge
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in all_containers(docs):
        ctx = c["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"]) == (int(uid), int(gid)), c["name"]
        assert ctx["runAsNonRoot"] is True
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"requests", "limits"} <= c["resources"].keys()
        writable_tmp = "/tmp"  # noqa: S108 - the emptyDir mount point, not a file the test writes
        assert any(m["mountPath"] == writable_tmp for m in c.get("volumeMounts", [])), c["name"]
    assert the(docs, "ServiceAccount", "bridge")["automountServiceAccountToken"] is False


def test_namespace_enforces_the_restricted_pod_security_profile(docs: Docs) -> None:
    labels = the(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_secrets_and_routes_reach_the_bridge(docs: Docs) -> None:
    """Webhook secret and Sync token from a Secret; the routes ConfigMap at BRIDGE_ROUTES_FILE."""
    bridge = container(docs)
    assert env_from_secret(bridge, "BRIDGE_WEBHOOK_SECRET") == ("bridge-secrets", "webhook-secret")
    assert env_from_secret(bridge, "BRIDGE_SYNC_TOKEN") == ("bridge-secrets", "sync-token")
    (mount,) = [m for m in bridge["volumeMounts"] if m["name"] == "routes"]
    assert mount["mountPath"] == config(docs)["BRIDGE_ROUTES_FILE"] == "/etc/bridge/routes.yaml"
    (volume,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "routes"]
    routes_map = the(docs, "ConfigMap", volume["configMap"]["name"])
    assert "routes" in yaml.safe_load(routes_map["data"][mount["subPath"]])
    (key,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "github-app"]
    assert key["secret"]["optional"] is True  # a slot: pods start without it


def test_every_referenced_secret_key_is_in_the_example(docs: Docs) -> None:
    """deploy/secrets.example.yaml (and so the guide) lists every Secret key the pods read."""
    example = {
        (d["metadata"]["name"], key)
        for d in yaml.safe_load_all((ROOT / "deploy" / "secrets.example.yaml").read_text())
        for key in d.get("stringData", {})
    }
    documented = (ROOT / "deploy" / "secrets.example.yaml").read_text()
    for c in all_containers(docs):
        for var in c.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            if ref.get("optional"):
                assert ref["key"] in documented, ref
            else:
                assert (ref["name"], ref["key"]) in example, ref


def test_ingress_exposes_only_the_webhook_and_admits_25_mb(docs: Docs) -> None:
    """GitHub sends up to 25 MB; ingress-nginx refuses more than 1 MB unless told otherwise."""
    ingress = the(docs, "Ingress", "bridge")
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert re.fullmatch(r"\d+m", size)
    assert int(size[:-1]) >= 25
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/webhooks/github", "Exact")]
    service = the(docs, "Service", paths[0]["backend"]["service"]["name"])
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_metrics_are_announced_for_scraping(docs: Docs) -> None:
    annotations = the(docs, "Deployment", "bridge")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "8080"


def test_network_policy_admits_port_8080_and_lets_out_dns_and_https(docs: Docs) -> None:
    policy = the(docs, "NetworkPolicy", "bridge")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [8080]
    out = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert out == {53, 443}


def test_sqlite_overlay_is_one_replica_on_a_volume(rendered: dict[str, Docs]) -> None:
    """One writer: one replica, never two at once (Recreate), the database on the claim."""
    docs = rendered["sqlite"]
    deployment = the(docs, "Deployment", "bridge")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = the(docs, "PersistentVolumeClaim")
    (volume,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "data"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "data"]
    assert config(docs)["BRIDGE_DATABASE_URL"] == f"sqlite:///{mount['mountPath']}/bridge.db"


def test_postgres_overlay_is_replicated_disruption_safe_and_migrates_first(rendered: dict[str, Docs]) -> None:
    """Two or more replicas, a budget, no gap on rollout, `bridge migrate` before serving."""
    docs = rendered["postgres"]
    deployment = the(docs, "Deployment", "bridge")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = the(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    (migrate,) = pod_spec(docs)["initContainers"]
    assert migrate["args"] == ["migrate"]
    for c in (migrate, container(docs)):
        assert env_from_secret(c, "BRIDGE_DATABASE_URL") == ("bridge-database", "url"), c["name"]
    # Least privilege: the migration opens the store only and is given no other secret.
    assert [v["name"] for v in migrate["env"]] == ["BRIDGE_DATABASE_URL"]
    assert "BRIDGE_DATABASE_URL" not in config(docs)
    egress = [p["port"] for p in the(docs, "NetworkPolicy", "bridge-postgres")["spec"]["egress"][0]["ports"]]
    assert egress == [5432]


def test_example_routes_file_is_one_the_bridge_loads() -> None:
    """deploy/base/routes.yaml, the ConfigMap's content, stays valid as the routes format evolves."""
    from bridge.routes_file import load_routes

    table = load_routes(ROOT / "deploy" / "base" / "routes.yaml")
    assert len(table.routes) == 2

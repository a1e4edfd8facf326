"""The Kubernetes manifests in deploy/kubernetes: valid against the Kubernetes API schemas (offline,
strict: no unknown fields), and consistent with the service and its image: probes on /ready and
/health, the image's user and port, the Secret's keys, real settings, selectors that match."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cds_service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
FILES = sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")
VERSIONS = ["1.29.0", "1.33.0", kubernetes_validate.latest_version()]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def resources() -> dict[str, dict]:
    found = {}
    for path in FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


K = resources()
POD = K["Deployment"]["spec"]["template"]
CONTAINER = POD["spec"]["containers"][0]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_manifest_is_valid_for_kubernetes(path, version):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_the_validator_rejects_a_broken_manifest():
    broken = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8000]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    broken = yaml.safe_load((MANIFESTS / "service.yaml").read_text())
    broken["spec"]["selectr"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_every_kind_the_platform_needs_is_there():
    assert set(K) == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret", "Job",
                      "NetworkPolicy"}
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    # neither the Job (one per release) nor the Secret (the operator's: apply -k must never overwrite it)
    assert sorted(listed) == sorted(p.name for p in FILES if p.name not in ("migrate-job.yaml", "secret.example.yaml"))


def test_probes_port_and_user_are_the_service_and_image_ones():
    port = int(re.search(r'"--bind", "0\.0\.0\.0:(\d+)"', DOCKERFILE).group(1))
    user = int(re.search(r"^USER (\d+)$", DOCKERFILE, re.M).group(1))
    assert CONTAINER["ports"] == [{"name": "http", "containerPort": port}]
    assert CONTAINER["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert CONTAINER["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert "command" not in CONTAINER and "args" not in CONTAINER  # the image's gunicorn entrypoint
    pod = POD["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == user
    assert CONTAINER["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert {"requests", "limits"} <= set(CONTAINER["resources"])
    assert all({"cpu", "memory"} <= set(v) for v in CONTAINER["resources"].values())
    tmp = [m for m in CONTAINER["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and "PROMETHEUS_MULTIPROC_DIR=/tmp/" in DOCKERFILE  # the metrics files are writable


def test_the_audit_journal_has_a_volume_larger_than_its_budget():
    env = {v["name"]: v.get("value") for v in CONTAINER["env"]}
    [mount] = [m for m in CONTAINER["volumeMounts"] if m["mountPath"] == env["CDS_JOURNAL_DIR"]]
    [volume] = [v for v in POD["spec"]["volumes"] if v["name"] == mount["name"]]
    assert "medium" not in volume["emptyDir"]  # on disk, not in the container's memory
    assert volume["emptyDir"]["sizeLimit"] == "2Gi" and int(env["CDS_JOURNAL_MAX_MB"]) < 2 * 1024
    # the image's own folder for it, owned by its user, where the manifest mounts the volume
    assert f"CDS_JOURNAL_DIR={env['CDS_JOURNAL_DIR']} " in DOCKERFILE
    assert re.search(rf"chown cds:cds {re.escape(env['CDS_JOURNAL_DIR'])} ", DOCKERFILE)


def test_settings_and_secrets_are_real():
    known = {f"CDS_{f.name.upper()}" for f in fields(Settings)}
    secret = set(K["Secret"]["stringData"])
    for container in (CONTAINER, K["Job"]["spec"]["template"]["spec"]["containers"][0]):
        for var in container["env"]:
            assert var["name"] in known or var["name"].startswith(("GUNICORN_", "WEB_CONCURRENCY")), var
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == K["Secret"]["metadata"]["name"] and ref["key"] in secret
    env = {v["name"]: v.get("value") for v in CONTAINER["env"]}
    assert {"CDS_DATABASE_URL", "CDS_TRUSTED_ISSUERS"} <= set(env)
    assert env["CDS_DB_SCHEMA"] == "check"  # the pods never migrate; the Job does


def test_the_migration_runs_once_per_release_with_the_same_image():
    job = K["Job"]["spec"]["template"]["spec"]
    [migrate] = job["containers"]
    assert migrate["command"] == ["cds-service", "migrate"] and migrate["image"] == CONTAINER["image"]
    assert job["restartPolicy"] in ("OnFailure", "Never") and job["securityContext"]["runAsNonRoot"] is True


def test_selectors_match_the_pods_and_stops_are_graceful():
    labels = POD["metadata"]["labels"]
    assert K["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert K["Service"]["spec"]["selector"].items() <= labels.items()
    assert K["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = K["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", K["Deployment"]["metadata"]["name"])
    assert K["PodDisruptionBudget"]["spec"]["minAvailable"] < K["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    assert K["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {v["name"]: v.get("value") for v in CONTAINER["env"]}
    drain = int(CONTAINER["lifecycle"]["preStop"]["exec"]["command"][1])
    assert POD["spec"]["terminationGracePeriodSeconds"] > drain + int(env["GUNICORN_GRACEFUL_TIMEOUT"])


# -- issue 20 ------------------------------------------------------------------------------------------

def secret_key(container: dict, name: str) -> str:
    [var] = [v for v in container["env"] if v["name"] == name]
    return var["valueFrom"]["secretKeyRef"]["key"]


def test_the_pods_and_the_migration_use_different_database_roles_and_the_secrets_are_set():
    job = K["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert secret_key(CONTAINER, "CDS_DATABASE_URL") == "database-url"
    assert secret_key(job, "CDS_DATABASE_URL") == "migration-database-url"
    assert "cds_app" in K["Secret"]["stringData"]["database-url"]
    assert "cds_migrator" in K["Secret"]["stringData"]["migration-database-url"]
    assert secret_key(CONTAINER, "CDS_PATIENT_HASH_KEY") == "patient-hash-key"  # repeat alerts on, hashes shared
    assert secret_key(CONTAINER, "CDS_METRICS_TOKEN") == "metrics-token"
    env = {v["name"]: v.get("value") for v in CONTAINER["env"]}
    assert env["CDS_PUBLIC_BASE_URL"].startswith("https://")


PG_MAX_CONNECTIONS, PG_RESERVED, ADMIN_HEADROOM = 100, 3, 12  # PostgreSQL's defaults, and room for people


def test_database_connections_fit_postgresql_at_the_autoscalers_maximum_during_a_rolling_update():
    env = {v["name"]: v.get("value") for v in CONTAINER["env"]}
    per_pod = int(env["WEB_CONCURRENCY"]) * int(env["CDS_DB_POOL_SIZE"])
    pods = K["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] + \
        int(K["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxSurge"])
    peak = pods * per_pod + 1  # + the migrate Job
    assert peak <= PG_MAX_CONNECTIONS - PG_RESERVED - ADMIN_HEADROOM, peak
    assert f"= {peak - 1}" in (MANIFESTS / "deployment.yaml").read_text()  # the arithmetic written down


def test_the_pool_is_the_configured_size_without_overflow():
    from cds_service.storage import Database
    db = Database("postgresql+psycopg://app@127.0.0.1:9/cds", pool_size=3)  # nothing is connected
    assert db.engine.pool.size() == 3 and db.engine.pool._max_overflow == 0


def test_the_network_policy_lets_in_the_ingress_and_prometheus_only_and_out_dns_database_and_ehrs():
    policy = K["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= POD["metadata"]["labels"].items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert sorted(port["port"] for rule in policy["egress"] for port in rule["ports"]) == [53, 53, 443, 5432]
    blocks = [block.get("ipBlock", {}).get("cidr") for rule in policy["egress"] for block in rule["to"]]
    assert "0.0.0.0/0" not in blocks

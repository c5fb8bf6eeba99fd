"""deployment/kubernetes/: every manifest validates against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors), and the set is complete and
consistent: Deployments with resources, probes and a locked-down securityContext, a
migrate Job, PodDisruptionBudgets that select real pods, a KEDA ScaledObject on real
queues, settings that exist."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deployment.tools import DEPLOYMENT

K8S = DEPLOYMENT / "kubernetes"
VERSION = "1.30.0"  # the oldest Kubernetes these manifests promise to work on
CUSTOM = {"keda.sh/v1alpha1"}


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> list[dict]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in _resources() if doc["kind"] == kind}


# kustomization.yaml is kustomize's own file, not a resource: checked below.
@pytest.mark.parametrize(
    "path", sorted(set(K8S.glob("*.yaml")) - {K8S / "kustomization.yaml"}), ids=lambda p: p.name
)
def test_manifest_validates_against_the_kubernetes_schema(path):
    for doc in _documents(path):
        if doc["apiVersion"] in CUSTOM:
            continue  # KEDA's resources: test_keda_scales_the_workers_on_queue_depth
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == "ledgerq"
    assert [image["name"] for image in kustomization["images"]] == ["ledgerq"]
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk


def test_deployments_have_resources_probes_and_a_locked_down_security_context():
    deployments = _kind("Deployment")
    assert set(deployments) == {"ledgerq-web", "ledgerq-worker", "ledgerq-scheduler"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            limits = container["resources"]
            assert {"cpu", "memory"} <= set(limits["requests"]) and "memory" in limits["limits"], name
            assert "livenessProbe" in container and "startupProbe" in container, name
            security = container["securityContext"]
            assert (
                security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
            )
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/run/ledgerq-secrets"}
    web = deployments["ledgerq-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployments["ledgerq-web"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployments["ledgerq-scheduler"]["spec"]["replicas"] >= 2  # a standby
    assert "replicas" not in deployments["ledgerq-worker"]["spec"]  # KEDA owns it


def test_a_migrate_job_runs_ledgerq_migrate():
    (job,) = _kind("Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["ledgerq", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_disruption_budgets_select_real_pods():
    budgets = _kind("PodDisruptionBudget")
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in _kind("Deployment").values()]
    assert len(budgets) == 3
    for name, budget in budgets.items():
        wanted = budget["spec"]["selector"]["matchLabels"]
        assert sum(wanted.items() <= labels.items() for labels in templates) == 1, name


def test_keda_scales_the_workers_on_queue_depth():
    import workers

    scaled = _kind("ScaledObject")["ledgerq-worker"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "ledgerq-worker")
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    auths = _kind("TriggerAuthentication")
    secret_keys = set(_kind("Secret")["ledgerq-secrets"]["stringData"])
    queues = workers.broker.get_declared_queues()
    assert scaled["spec"]["triggers"]
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "redis"
        namespace, queue = trigger["metadata"]["listName"].split(":")
        assert namespace == "ledgerq" and queue in queues  # the Dramatiq list ledgerq_queue_depth counts
        assert int(trigger["metadata"]["listLength"]) > 0
        auth = auths[trigger["authenticationRef"]["name"]]
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == "ledgerq-secrets" and ref["key"] in secret_keys


def test_configured_settings_exist_and_their_files_are_in_the_secret():
    from db.core.config import Settings

    known = {(field.alias or name).upper() for name, field in Settings.model_fields.items()}
    config = _kind("ConfigMap")["ledgerq-config"]["data"]
    secret_keys = set(_kind("Secret")["ledgerq-secrets"]["stringData"])
    for key, value in config.items():
        assert key in known or (key.endswith("_FILE") and key.removesuffix("_FILE") in known), key
        if key.endswith("_FILE"):
            directory, _, name = value.rpartition("/")
            assert directory == "/run/ledgerq-secrets" and name in secret_keys, key
    assert config["LEDGERQ_ENV"] == "production"

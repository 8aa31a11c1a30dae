"""The Kubernetes manifests and the Grafana dashboard, offline: every overlay renders
(``kubectl kustomize``) and every object validates against the Kubernetes API schemas
(kubernetes-validate, strict); the points docs/scaling.md promises are checked on the
rendered objects; every query of the dashboard names a metric the services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError

from facewire.metrics import Metrics
from tests.servers import ROOT

pytestmark = pytest.mark.unit

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
K8S_VERSION = "1.32.0"


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: make system-deps installs it (kubernetes-client)"
    out = subprocess.run([kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_there_are_three_overlays() -> None:
    assert OVERLAYS == ["ingress-nginx", "linkerd", "plain"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_api_schemas(overlay: str) -> None:
    objects = render(overlay)
    assert len(objects) >= 12
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validation_would_catch_a_mistake() -> None:
    deployment = by_kind(render("plain"), "Deployment")["facewire-grpc"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 1
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deployments_are_locked_down_and_probed(overlay: str) -> None:
    deployments = by_kind(render(overlay), "Deployment")
    assert set(deployments) == {"facewire-rest", "facewire-grpc"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the images' user
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "memory" in container["resources"]["limits"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, (name, probe)
        if name == "facewire-grpc":
            assert container["readinessProbe"]["grpc"]["port"] == 50051  # the native probe
        # Each pod saves into a folder of its own (the CSV lock is per node).
        assert {"name": "data", "emptyDir": {}} in pod["volumes"]


def test_services_headless_named_and_aged() -> None:
    objects = render("plain")
    services = by_kind(objects, "Service")
    assert services["facewire-grpc-headless"]["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in services["facewire-grpc"]["spec"]  # a ClusterIP
    for service in services.values():
        for port in service["spec"]["ports"]:
            assert port["name"].startswith(("grpc", "http")), port  # meshes read the name
    settings = by_kind(objects, "ConfigMap")["facewire-settings"]["data"]
    assert float(settings["FACEWIRE_GRPC_MAX_CONNECTION_AGE_S"]) > 0
    assert set(by_kind(objects, "HorizontalPodAutoscaler")) == {"facewire-rest", "facewire-grpc"}
    assert set(by_kind(objects, "PodDisruptionBudget")) == {"facewire-rest", "facewire-grpc"}
    secret_refs = [
        source["secretRef"]
        for deployment in by_kind(objects, "Deployment").values()
        for source in deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        if "secretRef" in source
    ]
    assert secret_refs == [{"name": "facewire-auth", "optional": True}] * 2


def test_the_overlays_add_what_they_say() -> None:
    ingresses = by_kind(render("ingress-nginx"), "Ingress")
    annotations = ingresses["facewire-grpc"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    for deployment in by_kind(render("linkerd"), "Deployment").values():
        pod = deployment["spec"]["template"]["metadata"]
        assert pod["annotations"]["linkerd.io/inject"] == "enabled"


def test_the_dashboard_queries_metrics_the_services_export() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "facewire.json").read_text())
    families = {metric.name for metric in Metrics().registry.collect()}
    exported = families | {f"{name}_{suffix}" for name in families
                           for suffix in ("bucket", "sum", "count", "total")}  # fmt: skip
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bfacewire_[a-z_]+", target["expr"]))
            assert names, target
            assert names <= exported, (panel["title"], names - exported)


def test_no_secret_value_is_in_the_manifests() -> None:
    secret = by_kind(render("plain"), "Secret")["facewire-auth"]
    assert not secret.get("stringData")
    assert not secret.get("data")
    assert not list(Path(KUBERNETES).rglob("*.env"))

"""deploy/kubernetes: every overlay and the Jobs render with ``kubectl kustomize`` and every
object validates against the Kubernetes schemas (``kubernetes-validate``, offline, strict);
the shard wiring, probes, GPU limits and the ConfigMap's service config are checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamcount.config.loader import load_config
from streamcount.config.schema import ServiceConfig

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("overlays/cpu", "overlays/gpu", "overlays/servicemonitor", "jobs")
#: the oldest Kubernetes the manifests are for (pod-index label: 1.28; backoffLimitPerIndex:
#: 1.29) and the newest schema the validator ships
VERSIONS = ("1.29.0", "latest")
#: kinds of CRDs, which have no schema in kubernetes-validate
CRDS = {"ServiceMonitor"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/kubernetes with the credentials file made from its example."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it carries kustomize: `kubectl kustomize`)")
    dst = tmp_path_factory.mktemp("k8s") / "kubernetes"
    shutil.copytree(K8S, dst, ignore=shutil.ignore_patterns("credentials.env"))
    shutil.copy(dst / "base" / "credentials.env.example", dst / "base" / "credentials.env")
    return dst


def render(tree: Path, overlay: str) -> list[dict[str, Any]]:
    p = subprocess.run(["kubectl", "kustomize", str(tree / overlay)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(tree: Path, overlay: str) -> None:
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate is not installed (dev extra)")
    docs = render(tree, overlay)
    assert docs
    for version in VERSIONS:
        v = kv.latest_version() if version == "latest" else version
        for doc in docs:
            if doc["kind"] in CRDS:
                continue
            try:
                kv.validate(doc, v, strict=True)
            except kv.ValidationError as e:
                pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} "
                            f"(Kubernetes {v}): {e.message} at {list(e.path)}")


@pytest.mark.parametrize("overlay, replicas, gpu", [
    ("overlays/cpu", 3, False), ("overlays/gpu", 2, True), ("overlays/servicemonitor", 3, False),
])
def test_statefulset_shards_probes_and_resources(tree: Path, overlay: str, replicas: int,
                                                 gpu: bool) -> None:
    docs = render(tree, overlay)
    sts = one(docs, "StatefulSet", "streamcount")
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = env_of(c)
    # replicas = shards; the index from the pod-index label (downward API)
    assert sts["spec"]["replicas"] == replicas and env["STREAMCOUNT_SHARD_COUNT"] == str(replicas)
    assert env["STREAMCOUNT_SHARD_INDEX"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz"
    res = c["resources"]
    assert ("nvidia.com/gpu" in res["limits"]) is gpu
    assert "nvidia.com/gpu" not in res.get("requests", {})
    assert c["image"].endswith(":gpu" if gpu else ":cpu")
    # the generated ConfigMap and Secret (hash-suffixed names) are the ones mounted
    volumes = {v["name"]: v for v in pod["volumes"]}
    cm = one(docs, "ConfigMap")
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    secret = one(docs, "Secret")
    assert volumes["credentials"]["secret"]["secretName"] == secret["metadata"]["name"]
    svc = one(docs, "Service", "streamcount")
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == "streamcount"
    assert svc["spec"]["selector"].items() <= pod.get("labels", sts["spec"]["template"]
                                                      ["metadata"]["labels"]).items()
    if overlay.endswith("servicemonitor"):
        sm = one(docs, "ServiceMonitor")
        assert sm["spec"]["endpoints"][0]["port"] == "http"
        assert sm["spec"]["selector"]["matchLabels"].items() <= \
            svc["metadata"]["labels"].items()


def test_configmap_config_validates_with_the_secret(tree: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(tree, "overlays/cpu")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for line in (tree / "base" / "credentials.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            (secrets / key).write_text(value)
    monkeypatch.setenv("STREAMCOUNT_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("MQTT_HOST", "mosquitto.mqtt.svc.cluster.local")
    path = tmp_path / "service.yaml"
    path.write_text(one(docs, "ConfigMap")["data"]["service.yaml"])
    cfg: ServiceConfig = load_config(path)
    assert cfg.mqtt is not None and cfg.mqtt.password == "change-me"
    assert len(cfg.cameras) == 6 and cfg.http.host == "0.0.0.0"
    assert cfg.cameras[0].source.startswith("rtsp://viewer:change-me@")


def test_indexed_job_shards_match_and_torchrun_job(tree: Path) -> None:
    docs = render(tree, "jobs")
    job = one(docs, "Job", "streamcount-count-videos")
    spec = job["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    assert spec["completionMode"] == "Indexed"
    shard = c["args"][c["args"].index("--shard") + 1]
    assert shard == f"$(SHARD_INDEX)/{spec['completions']}"
    assert spec["parallelism"] == spec["completions"]
    assert env_of(c)["SHARD_INDEX"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    videos = one(docs, "ConfigMap")["data"]["videos.txt"]
    assert sum(1 for x in videos.splitlines() if x and not x.startswith("#")) == 8

    train = one(docs, "Job", "streamcount-train")
    (t,) = train["spec"]["template"]["spec"]["containers"]
    nodes = train["spec"]["completions"]
    assert t["command"] == ["torchrun"] and f"--nnodes={nodes}" in t["args"]
    assert t["resources"]["limits"]["nvidia.com/gpu"] == 2 and "--nproc-per-node=2" in t["args"]
    assert train["spec"]["template"]["spec"]["subdomain"] == \
        one(docs, "Service", "streamcount-train")["metadata"]["name"]
    assert (ROOT / "configs" / "train" / "shb_teacher.yaml").is_file()

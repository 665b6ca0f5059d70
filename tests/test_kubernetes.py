"""Kubernetes, without a cluster: the profile loads, the pod specs that Snakemake's
plugin and our Dask backend would send carry the memory and GPU requests and are
valid Kubernetes objects, and a missing cluster is a clear error in bounded time.

There is no container engine or API server here. The Snakemake plugin's requests go
to a small fake API server on 127.0.0.1 that records them and reports every job as
failed; nothing runs in a pod (docs/backends.md: what has not been run).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from helpers import REPO, agc_config, snakemake_exe

pytest.importorskip("dask_kubernetes")
kubernetes = pytest.importorskip("kubernetes")

from swift_rules.backends import ClusterError, dask_client  # noqa: E402
from swift_rules.backends import kubernetes as kube  # noqa: E402
from swift_rules.backends.base import schema_settings  # noqa: E402
from swift_rules.config import validate_config  # noqa: E402

PROFILE = REPO / "profiles" / "k8s"


def _model(data, type_name: str):
    """``data`` through the kubernetes client's own deserialiser and back."""
    api = kubernetes.client.ApiClient()
    obj = api._ApiClient__deserialize(data, type_name)
    return obj, api.sanitize_for_serialization(obj)


def _drop_none(value):
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# --- the Dask KubeCluster spec ----------------------------------------------------


def executor(**kubernetes_settings) -> dict:
    cfg = {"executor": {"type": "kubernetes", "kubernetes": kubernetes_settings}}
    return validate_config(cfg)["executor"]


def test_dask_cluster_spec_carries_gpu_and_memory_and_is_valid():
    cfg = executor(gpus=1, memory="6Gi", cores=2)
    cfg["maximum_workers"] = 4
    spec = kube.cluster_spec(cfg, workers=1, name="swift-rules-test")
    kube.validate_spec(spec)
    worker = spec["spec"]["worker"]["spec"]
    (container,) = worker["containers"]
    for kind in ("requests", "limits"):
        assert container["resources"][kind]["nvidia.com/gpu"] == "1"
        assert container["resources"][kind]["memory"] == "6Gi"
        assert container["resources"][kind]["cpu"] == "2"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker[
        "tolerations"
    ]
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in scheduler["resources"]["requests"]  # no GPU wasted there
    assert spec["spec"]["worker"]["replicas"] == 1  # minimum_workers; adapt() scales up
    # The pod and service specs are what the Kubernetes API models make of them: no
    # field is unknown (it would be dropped on the way through) or of the wrong type.
    for path, type_name in (
        (("worker", "spec"), "V1PodSpec"),
        (("scheduler", "spec"), "V1PodSpec"),
        (("scheduler", "service"), "V1ServiceSpec"),
    ):
        part = spec["spec"][path[0]][path[1]]
        obj, back = _model(part, type_name)
        assert _drop_none(back) == _drop_none(part), type_name
    obj, _ = _model(worker, "V1PodSpec")
    assert obj.containers[0].resources.limits["nvidia.com/gpu"] == "1"


def test_dask_cluster_spec_without_gpu_asks_for_none():
    spec = kube.cluster_spec(executor(), workers=2, name="swift-rules-cpu")
    kube.validate_spec(spec)
    worker = spec["spec"]["worker"]["spec"]
    assert "nvidia.com/gpu" not in worker["containers"][0]["resources"]["limits"]
    assert "tolerations" not in worker
    assert worker["containers"][0]["resources"]["requests"]["memory"] == "2Gi"


SECRET = "broker-token-in-plain-text-0123456789"


def test_a_token_reaches_the_pods_as_a_secret_reference_never_in_plain_text():
    """A token in executor.kubernetes.env would be in every pod spec (readable by whoever
    may read pods, and kept by the API server): refused, naming the setting and not the
    value; a reference to a Kubernetes secret goes in instead, a valid V1EnvVar."""
    with pytest.raises(ClusterError, match="env.DASK_BROKER_TOKEN: a secret in plain text") as err:
        kube.cluster_spec(executor(env={"DASK_BROKER_TOKEN": SECRET}), workers=1, name="s")
    assert SECRET not in str(err.value)
    given = {"secret": "swift-broker", "key": "token"}
    cfg = executor(env={"DASK_BROKER_TOKEN": given, "OMP_NUM_THREADS": "1"})
    spec = kube.cluster_spec(cfg, workers=1, name="swift-rules-secret")
    kube.validate_spec(spec)
    for role in ("scheduler", "worker"):
        (container,) = spec["spec"][role]["spec"]["containers"]
        ref = {"secretKeyRef": {"name": "swift-broker", "key": "token"}}
        assert {"name": "DASK_BROKER_TOKEN", "valueFrom": ref} in container["env"]
        assert {"name": "OMP_NUM_THREADS", "value": "1"} in container["env"]
        obj, _ = _model(spec["spec"][role]["spec"], "V1PodSpec")
        assert obj.containers[0].env[0].value_from.secret_key_ref.key == "token"
    with pytest.raises(ClusterError, match=r"is \{secret: NAME, key: KEY\}"):
        kube.cluster_spec(executor(env={"X": {"secret": "s"}}), workers=1, name="s")


def test_invalid_spec_names_every_problem():
    spec = kube.cluster_spec(executor(gpus=1), workers=1, name="swift-rules-bad")
    bad = copy.deepcopy(spec)
    container = bad["spec"]["worker"]["spec"]["containers"][0]
    container["resourcez"] = {}
    container["resources"]["limits"]["memory"] = "6 gigs"
    del bad["spec"]["scheduler"]["spec"]["containers"][0]["name"]
    bad["spec"]["scheduler"]["service"]["ports"][0]["port"] = "8786x"
    bad["metadata"]["name"] = "Not_A_Name"
    with pytest.raises(ClusterError) as err:
        kube.validate_spec(bad)
    assert "metadata.name" in str(err.value)
    bad["metadata"]["name"] = "ok-name"
    with pytest.raises(ClusterError) as err:
        kube.validate_spec(bad)
    text = str(err.value)
    assert "containers[0].resourcez: not a field of V1Container" in text
    assert "'6 gigs' is not a Kubernetes quantity" in text
    assert "spec.scheduler.spec.containers[0]" in text and "name" in text
    assert "ports[0].port: expected int" in text


def test_unknown_kubernetes_setting_is_a_config_error():
    with pytest.raises(Exception, match="gpu"):
        validate_config({"executor": {"type": "kubernetes", "kubernetes": {"gpu": 1}}})
    with pytest.raises(ClusterError, match=r"executor.kubernetes: Additional properties.*'gpu'"):
        schema_settings({"kubernetes": {"gpu": 1}}, "kubernetes")


def test_no_cluster_is_a_clear_error_in_bounded_time(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = {**executor(), "worker_timeout": 5}
    started = time.monotonic()
    with pytest.raises(ClusterError) as err, dask_client(cfg, 2):
        pass
    assert time.monotonic() - started < 30
    assert "Kubernetes" in str(err.value)


# --- the Snakemake profile --------------------------------------------------------


def write_workdir(path: Path, *, gpu: int, mem_mb: int) -> Path:
    config = agc_config(
        data={
            "generated": {"preset": "tiny", "events_per_file": 100, "files_per_sample": 1},
            "files_per_group": 1,
        },
        stages={"agc::ttbar": {"gpu": gpu, "mem_mb": mem_mb, "threads": 2}},
        analysis={"fit": False, "hepdata": False},
    )
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
    cmd = [
        snakemake_exe(), "--profile", str(PROFILE), "--snakefile",
        str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args,
    ]  # fmt: skip
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )


def test_profile_loads_for_a_dry_run(tmp_path):
    workdir = write_workdir(tmp_path, gpu=0, mem_mb=2000)
    proc = snakemake(workdir, "--dry-run", "--default-storage-prefix", str(tmp_path / "store"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "swift_process" in text and "gpu_manufacturer=nvidia" in text


class FakeKubeAPI(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for the Snakemake plugin: it records the
    jobs it is sent, and says each one failed."""

    jobs: list = []

    def log_message(self, *args):
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path.endswith("/jobs"):
            FakeKubeAPI.jobs.append(body)
        self._reply(201, body)

    def do_GET(self):
        if "/jobs/" in self.path:
            name = self.path.split("/jobs/")[1].split("/")[0]
            self._reply(
                200,
                {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                 "status": {"failed": 1}},
            )  # fmt: skip
        elif "/pods" in self.path:
            self._reply(200, {"apiVersion": "v1", "kind": "PodList", "items": []})
        else:
            self._reply(404, {"kind": "Status", "code": 404})

    def do_DELETE(self):
        self._reply(200, {"kind": "Status", "status": "Success"})


@pytest.fixture
def fake_api(tmp_path):
    FakeKubeAPI.jobs = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKubeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake",
                          "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        })
    )  # fmt: skip
    yield kubeconfig
    server.shutdown()
    server.server_close()


def test_profile_pod_specs_carry_gpu_and_memory(tmp_path, fake_api):
    """The job that Snakemake's Kubernetes plugin sends for a stage job with gpu: 1 and
    mem_mb: 3000, through our profile, asks for them, and is a valid V1Job."""
    if shutil.which("rsync") is None:  # the file-system storage plugin copies with it
        msg = "rsync is not installed (apt-get install rsync; .ci/run does)"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)

    workdir = write_workdir(tmp_path / "work", gpu=1, mem_mb=3000)
    store = tmp_path / "store"
    # The stage job's input, already in the storage (nothing runs in a pod here).
    target = "results/agc/ttbar/partial/ttbar__nominal/group0000.pkl"
    dry = snakemake(workdir, "--dry-run", "--default-storage-prefix", str(store), target)
    assert dry.returncode == 0, dry.stderr[-3000:]
    for line in (dry.stdout + dry.stderr).splitlines():
        if line.strip().startswith("input:") and "ttbar__nominal_0000.root" in line:
            for path in line.split(":", 1)[1].split(","):
                path = Path(path.strip().split(" (")[0])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"not read: the job does not run")
    proc = snakemake(
        workdir, "--default-storage-prefix", str(store), "--retries", "0", target,
        "--seconds-between-status-checks", "1",
        env={"KUBECONFIG": str(fake_api)},
    )  # fmt: skip
    assert proc.returncode != 0  # the fake API says the job failed
    jobs = FakeKubeAPI.jobs
    (tmp_path / "jobs.json").write_text(json.dumps(jobs, indent=1))
    assert len(jobs) == 1, (proc.stdout + proc.stderr)[-4000:]
    job, back = _model(jobs[0], "V1Job")
    assert _drop_none(back) == _drop_none(jobs[0])  # every field is a V1Job field
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert "swift_process" in " ".join(container.args), container.args
    assert container.resources.requests["nvidia.com/gpu"] == "1", container.resources
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["memory"] == "3000M"
    assert container.resources.limits["memory"] == "3000M"
    # What the API server checks beyond the models: extended resources (GPUs) cannot be
    # overcommitted, so their limits must be given and equal to the requests.
    for name, quantity in container.resources.requests.items():
        if "/" in name:
            assert container.resources.limits.get(name) == quantity, name
    assert container.resources.requests["cpu"] == "1900m"  # threads 2 x cpu-scalar 0.95
    assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)
    assert container.image == "ghcr.io/swift/swift-rules:0.1.0"

"""Dask workers as Kubernetes pods: dask-kubernetes' ``KubeCluster`` from a spec we build.

``executor.type: kubernetes``. The stage job creates a ``DaskCluster`` resource (the
dask-kubernetes operator must be installed in the cluster) from :func:`cluster_spec`:
a scheduler pod and worker pods of the image ``executor.kubernetes.image``, each worker
asking for ``cores``, ``memory`` and ``gpus`` (as ``nvidia.com/gpu``, with the matching
toleration). The spec is checked against the Kubernetes API models (the ``kubernetes``
client's ``V1PodSpec``, ``V1ServiceSpec`` and everything they contain) before it is sent:
:func:`validate_spec`. Workers adapt between ``executor.minimum_workers`` and
``executor.maximum_workers``; no worker within ``executor.worker_timeout`` seconds is an
error.

Secrets (a broker token) reach the pods as references to Kubernetes secrets
(``env: {NAME: {secret: SECRET, key: KEY}}``), never in plain text in the pod spec,
which whoever may list pods can read: a secret-looking ``env`` value is refused.

This backend has not been run against a live Kubernetes cluster (docs/backends.md).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping

from swift_rules.backends import ClusterError
from swift_rules.backends.base import BatchBackend, adaptive_limits, schema_settings
from swift_rules.backends.broker import dask_args
from swift_rules.redact import is_secret

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _resources(cores, memory, gpus: int = 0, gpu_resource: str = "nvidia.com/gpu") -> dict:
    requests = {"cpu": str(cores), "memory": str(memory)}
    limits = {"cpu": str(cores), "memory": str(memory)}
    if gpus:
        # Extended resources such as GPUs must have limits equal to their requests.
        requests[gpu_resource] = limits[gpu_resource] = str(int(gpus))
    return {"requests": requests, "limits": limits}


def pod_env(env: Mapping) -> list[dict]:
    """``executor.kubernetes.env`` as the pods' env entries: a value, or a reference to a
    Kubernetes secret ``{secret: NAME, key: KEY}``. A secret in plain text is refused."""
    entries = []
    for name, value in env.items():
        where = f"executor.kubernetes.env.{name}"
        if isinstance(value, Mapping):
            if set(value) != {"secret", "key"}:
                raise ClusterError(f"{where}: a secret reference is {{secret: NAME, key: KEY}}")
            ref = {"name": str(value["secret"]), "key": str(value["key"])}
            entries.append({"name": str(name), "valueFrom": {"secretKeyRef": ref}})
        elif is_secret(name):
            raise ClusterError(
                f"{where}: a secret in plain text would be in every pod's spec, for anyone who "
                "may read pods; keep it in a Kubernetes secret (kubectl create secret generic "
                "NAME --from-file=KEY=FILE) and give {secret: NAME, key: KEY}"
            )
        else:
            entries.append({"name": str(name), "value": str(value)})
    return entries


def cluster_spec(cfg: Mapping, workers: int, name: str | None = None) -> dict:
    """The ``DaskCluster`` resource for this executor config (a plain dict)."""
    from dask_kubernetes.operator import make_cluster_spec

    s = schema_settings(cfg, "kubernetes")
    minimum, _, _ = adaptive_limits(cfg, workers)
    if name is None:
        name = f"{s['name']}-{secrets.token_hex(3)}"
    # executor.broker: the workers listen on the broker (the token file must be mounted
    # at that path in the pods, or DASK_BROKER_TOKEN given as a secret reference in `env`);
    # the scheduler stays on its Service, which the pods reach (docs/broker.md).
    broker = dask_args(cfg)
    env = pod_env({**broker.env, **s["env"]})
    spec = make_cluster_spec(
        name=name,
        image=s["image"],
        n_workers=minimum,
        resources=_resources(s["scheduler_cores"], s["scheduler_memory"]),
        env=env,
        worker_command=["dask-worker", "--nthreads", "1", "--nworkers", "1", *broker.worker_args],
        scheduler_service_type=s["scheduler_service_type"],
        idle_timeout=int(s["idle_timeout"]),
    )
    worker = spec["spec"]["worker"]["spec"]
    gpus = int(s["gpus"])
    worker["containers"][0]["resources"] = _resources(
        s["cores"], s["memory"], gpus, s["gpu_resource"]
    )
    if s["node_selector"]:
        worker["nodeSelector"] = {str(k): str(v) for k, v in s["node_selector"].items()}
    if gpus:
        worker["tolerations"] = [
            {"key": s["gpu_resource"], "operator": "Exists", "effect": "NoSchedule"}
        ]
    return spec


# --- checking a spec against the Kubernetes API models --------------------------------


def _model_errors(value, type_name: str, path: str) -> list[str]:
    """Errors of ``value`` (JSON-like) against the kubernetes client's type ``type_name``:
    unknown fields, wrong types, missing required fields, bad quantities."""
    import kubernetes.client as k8s

    if value is None:
        return []
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        inner = type_name[5:-1]
        return [e for i, v in enumerate(value) for e in _model_errors(v, inner, f"{path}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [e for k, v in value.items() for e in _model_errors(v, inner, f"{path}.{k}")]
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in simple:
        ok = isinstance(value, simple[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    if type_name == "object":
        return []
    model = getattr(k8s, type_name, None)
    if model is None:
        return [f"{path}: unknown model {type_name}"]
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping, got {type(value).__name__}"]
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors = [f"{path}.{key}: not a field of {type_name}" for key in value if key not in by_json]
    for key, item in value.items():
        if key in by_json:
            errors += _model_errors(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    if not errors:
        # Required fields: the models' own client-side validation.
        kwargs = {by_json[k]: v for k, v in value.items()}
        try:
            model(**kwargs)
        except (ValueError, TypeError) as err:
            errors.append(f"{path}: {err}")
    return errors


def _quantity_errors(spec: Mapping) -> list[str]:
    from kubernetes.utils import parse_quantity

    errors = []
    for role in ("scheduler", "worker"):
        for i, container in enumerate(spec["spec"][role]["spec"].get("containers", [])):
            for kind, values in (container.get("resources") or {}).items():
                for resource, quantity in values.items():
                    try:
                        parse_quantity(quantity)
                    except ValueError:
                        errors.append(
                            f"spec.{role}.spec.containers[{i}].resources.{kind}.{resource}: "
                            f"{quantity!r} is not a Kubernetes quantity"
                        )
    return errors


def validate_spec(spec: Mapping) -> None:
    """Raise ClusterError naming every problem of a ``DaskCluster`` spec: its shape (the
    operator's CRD), and its pod and service specs against the Kubernetes API models."""
    errors = []
    if spec.get("apiVersion") != "kubernetes.dask.org/v1" or spec.get("kind") != "DaskCluster":
        errors.append("not a kubernetes.dask.org/v1 DaskCluster")
    name = (spec.get("metadata") or {}).get("name", "")
    if not (_DNS_LABEL.match(name) and len(name) <= 63):
        errors.append(f"metadata.name {name!r} is not a DNS label (lowercase, digits, '-')")
    body = spec.get("spec") or {}
    for role in ("scheduler", "worker"):
        if role not in body or "spec" not in body[role]:
            errors.append(f"spec.{role}.spec is missing")
    if errors:
        raise ClusterError("invalid DaskCluster spec: " + "; ".join(errors))
    if not isinstance(body.get("idleTimeout", 0), int):
        errors.append("spec.idleTimeout: expected an integer")
    replicas = body["worker"].get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        errors.append(f"spec.worker.replicas: {replicas!r} is not a count")
    errors += _model_errors(body["scheduler"]["spec"], "V1PodSpec", "spec.scheduler.spec")
    errors += _model_errors(body["worker"]["spec"], "V1PodSpec", "spec.worker.spec")
    if "service" not in body["scheduler"]:
        errors.append("spec.scheduler.service is missing")
    else:
        errors += _model_errors(
            body["scheduler"]["service"], "V1ServiceSpec", "spec.scheduler.service"
        )
    errors += _quantity_errors(spec)
    if errors:
        raise ClusterError("invalid DaskCluster spec: " + "; ".join(errors))


def _bounded(what: str, timeout: float, func):
    """``func()`` in a daemon thread; ClusterError if it has not returned in ``timeout``."""
    result: dict = {}

    def target():
        try:
            result["value"] = func()
        except BaseException as err:  # handed to the caller
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True, name=f"swift-rules {what}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ClusterError(f"{what} did not finish within {timeout:g} s (executor.worker_timeout)")
    if "error" in result:
        raise result["error"]
    return result.get("value")


class KubernetesBackend(BatchBackend):
    kind, title = "kubernetes", "Kubernetes"
    cluster_class, needs = "dask_kubernetes.operator:KubeCluster", "dask-kubernetes"
    giver = "the Kubernetes cluster"
    # The scheduler is a pod of its own, which reads no Dask config and no token here.
    local_scheduler = False

    def start(self, cluster_class: type):
        spec = cluster_spec(self.cfg, self.workers)
        validate_spec(spec)
        self.name = spec["metadata"]["name"]

        def make():
            return cluster_class(
                custom_cluster_spec=spec,
                namespace=self.settings["namespace"],
                resource_timeout=int(self.timeout),
                shutdown_on_close=True,
                quiet=True,
            )

        try:
            return _bounded("creating the Kubernetes Dask cluster", self.timeout, make)
        except ClusterError:
            raise
        except Exception as err:
            raise ClusterError(
                f"cannot create the Kubernetes Dask cluster {self.name!r} "
                f"(is there a kubeconfig, and the dask-kubernetes operator?): "
                f"{type(err).__name__}: {err}"
            ) from err

    def scale(self, cluster) -> None:
        cluster.adapt(minimum=max(self.minimum, 1), maximum=self.maximum)

    def banner(self, cluster) -> str:
        return f"Kubernetes Dask cluster {self.name}: {self.minimum}-{self.maximum} worker pod(s)"

    def diagnosis(self, cluster) -> str:
        return f"see `kubectl get pods -l dask.org/cluster-name={self.name}`"

"""Where a stage job's chunks run: the registry of Dask cluster kinds (``executor.type``).

Each kind is a *backend*, a class that gives the stage job its ``distributed.Client``
from the ``executor`` config section and lets go of it afterwards. ``BACKENDS`` names
each one's module in this package, imported when a stage job first uses it (as
distributed's comm registry does with its transports):

- ``local``, ``address`` (``local``): a LocalCluster in the job, or a scheduler that
  runs already;
- ``htcondor``, ``slurm`` (dask-jobqueue), ``dirac`` (a dask-jobqueue cluster whose jobs
  are DIRAC jobs), ``kubernetes`` (dask-kubernetes): Dask workers as batch jobs or pods.
  What they share (the optional package or a clear error, adaptive limits, the broker
  token, the start, the wait for the first worker, the diagnosis, the close on failure)
  is ``base.BatchBackend``; each module says only what is its own;
- the connection broker's client side, what the endpoints need: ``broker`` (scheduler
  options, worker arguments, tokens) and ``broker_comm`` (the ``broker://`` comm).

The rule files and the planner never import this package, and a backend's optional
packages are imported only when a cluster is made. The layers go one way: this package
imports nothing of the runner, the CLI or the workflow, and the broker's server and
protocol (``swift_rules.broker``) import nothing of it (tests/test_layers.py).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping

from swift_rules.errors import SwiftError


class ClusterError(SwiftError):
    """No Dask cluster for the stage job: a bad executor setting, a missing package or
    command, a batch system that gave no worker (the message says which)."""


# executor.type -> "module:class" in this package. "iterative" (and "local" with one
# worker) runs the chunks in the job's own process: no cluster.
BACKENDS: dict[str, str] = {
    "local": "local:LocalBackend",
    "address": "local:AddressBackend",
    "htcondor": "htcondor:HTCondorBackend",
    "slurm": "slurm:SlurmBackend",
    "kubernetes": "kubernetes:KubernetesBackend",
    "dirac": "dirac:DiracBackend",
}
IN_PROCESS = "iterative"


def get_backend(kind: str) -> type:
    """The backend class of ``executor.type: kind`` (its module imported now)."""
    if kind not in BACKENDS:
        raise ClusterError(
            f"unknown executor type {kind!r}; known: {sorted([*BACKENDS, IN_PROCESS])}"
        )
    module, _, name = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


@contextlib.contextmanager
def dask_client(cfg: Mapping, workers: int) -> Iterator[object | None]:
    """A Dask client for ``cfg`` (None: run in this process), closed afterwards with the
    cluster it started.

    ``local`` with one worker runs in-process: a one-worker cluster would only add
    start-up time and serialisation.
    """
    kind = cfg.get("type", "local")
    if kind == IN_PROCESS or (kind == "local" and workers <= 1):
        yield None
        return
    backend = get_backend(kind)(cfg, workers)
    client = backend.client()
    try:
        yield client
    finally:
        backend.close(client)

"""Dask clusters for the stage runner, chosen by the ``executor`` config section.

Each backend is one small function returning a ``distributed.Client`` (or None
for in-process execution). Batch-system backends (HTCondor, Slurm, DIRAC, Kubernetes)
plug in through ``BACKENDS``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

from swift_rules.errors import SwiftError


class ClusterError(SwiftError):
    pass


# The scheduler's and workers' HTTP servers (plain HTTP, no authentication) serve only
# /health unless a dashboard is asked for: no worker logs, task names or metrics for
# other users of the machine.
HTTP_HEALTH_ONLY = {
    "distributed.scheduler.http.routes": ["distributed.http.health"],
    "distributed.worker.http.routes": ["distributed.http.health"],
}


def _local(cfg: Mapping, workers: int):
    import dask
    from distributed import Client, LocalCluster
    from distributed.security import Security

    processes = cfg.get("processes", True)
    dashboard = cfg.get("dashboard_address")
    # Worker processes talk over loopback ports, which every local user can connect to
    # (and run code as us): mutual TLS with a key made for this cluster, held in memory
    # (docs/security.md). Threads talk in-process (inproc://): no port at all.
    security = Security.temporary() if processes else None
    with dask.config.set({} if dashboard else HTTP_HEALTH_ONLY):  # (the nannies copy it)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=dashboard,
            memory_limit=cfg.get("memory_limit", "auto"),
            security=security,
        )
    return Client(cluster, security=security)


def _address(cfg: Mapping, workers: int):
    from distributed import Client

    address = cfg.get("address")
    if not address:
        raise ClusterError("executor type 'address' needs 'address' (e.g. tcp://host:8786)")
    timeout = cfg.get("connect_timeout", 30)
    if address.startswith("broker://"):
        from swift_rules.broker import export_token

        export_token(cfg)  # the client's token, from executor.broker.token_file
    try:
        return Client(address, timeout=timeout)
    except OSError as err:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout} s: {err}"
        ) from err


def _htcondor(cfg: Mapping, workers: int):
    from swift_rules.backends.htcondor import client

    return client(cfg, workers)


def _slurm(cfg: Mapping, workers: int):
    from swift_rules.backends.slurm import client

    return client(cfg, workers)


def _kubernetes(cfg: Mapping, workers: int):
    from swift_rules.backends.kubernetes import client

    return client(cfg, workers)


def _dirac(cfg: Mapping, workers: int):
    from swift_rules.backends.dirac import client

    return client(cfg, workers)


# Batch-system backends live in swift_rules.backends (imported when used).
BACKENDS: dict[str, Callable] = {
    "local": _local,
    "address": _address,
    "htcondor": _htcondor,
    "slurm": _slurm,
    "kubernetes": _kubernetes,
    "dirac": _dirac,
}


@contextlib.contextmanager
def dask_client(cfg: Mapping, workers: int) -> Iterator[object | None]:
    """A Dask client for ``cfg`` (None: run in this process), closed afterwards.

    ``local`` with one worker runs in-process: a one-worker cluster would only
    add start-up time and serialisation.
    """
    kind = cfg.get("type", "local")
    if kind == "local" and workers <= 1:
        yield None
        return
    if kind == "iterative":
        yield None
        return
    try:
        factory = BACKENDS[kind]
    except KeyError:
        raise ClusterError(
            f"unknown executor type {kind!r}; known: {sorted([*BACKENDS, 'iterative'])}"
        ) from None
    client = factory(cfg, workers)
    try:
        yield client
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and kind != "address":
            cluster.close()

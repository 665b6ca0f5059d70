"""The Dask connection broker: every Dask connection through one open port.

- :mod:`swift_rules.broker.protocol`: the wire protocol (JSON lines, HMAC token auth).
- :mod:`swift_rules.broker.server`: the broker (``swift-rules broker serve``).
- :mod:`swift_rules.broker.comm`: the ``broker://`` Dask comm backend (entry point).

:func:`dask_args` is what a batch backend (HTCondor, Kubernetes, DIRAC) calls to start
its scheduler and workers through the broker named by ``executor.broker``.
See docs/broker.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from swift_rules.broker.protocol import DEFAULT_PORT, TOKEN_FILE_ENV


@dataclass
class BrokerArgs:
    """How to start Dask through a broker (empty when no broker is configured)."""

    address: str | None = None  # HOST:PORT of the broker
    scheduler_options: dict = field(default_factory=dict)  # Scheduler(**options)
    worker_args: list[str] = field(default_factory=list)  # `dask worker` arguments
    env: dict[str, str] = field(default_factory=dict)  # environment of every endpoint


def dask_args(cfg: Mapping) -> BrokerArgs:
    """Scheduler options, worker arguments and environment for ``executor.broker``.

    ``executor.broker: {address: HOST:PORT, token_file: PATH}``. The scheduler listens
    on ``broker://HOST:PORT`` (a fresh endpoint id), and each worker and nanny gets
    ``--protocol broker --host HOST:PORT``: its listener registers at that broker
    (whatever the scheduler's scheme). The token file must be readable at that path
    where the workers run (or set $DASK_BROKER_TOKEN there).
    """
    from swift_rules.clusters import ClusterError

    section = cfg.get("broker") or {}
    env = {}
    if section.get("token_file"):
        env[TOKEN_FILE_ENV] = os.path.abspath(str(section["token_file"]))
    address = section.get("address")
    if not address:
        return BrokerArgs(env=env)  # e.g. type address with a broker:// scheduler
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(
            f"executor.broker.address: {address!r} is not HOST:PORT (e.g. broker.example.org:"
            f"{DEFAULT_PORT})"
        )
    return BrokerArgs(
        address=f"{host}:{port}",
        scheduler_options={"protocol": "broker", "host": f"{host}:{port}"},
        worker_args=["--protocol", "broker", "--host", f"{host}:{port}"],
        env=env,
    )


def export_token(cfg: Mapping) -> BrokerArgs:
    """``dask_args(cfg)``, with its environment set in this process too: the stage job's
    scheduler and client then find the token."""
    args = dask_args(cfg)
    os.environ.update(args.env)
    return args

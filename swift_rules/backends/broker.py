"""The connection broker's client side: what a stage job and its workers need to start
Dask through the broker named by ``executor.broker`` (docs/broker.md).

- :func:`dask_args`: the scheduler's options, the workers' arguments and the
  endpoints' environment (where the token file is);
- :func:`export_token`: the same, with that environment set in this process, where the
  stage job's scheduler and client run;
- :func:`run_token`: a token for one stage job's workers only, made from the broker's
  token, for sandboxes that leave our hands (DIRAC).

The ``broker://`` comm that every endpoint speaks is :mod:`swift_rules.backends.broker_comm`;
the wire protocol, shared with the broker's server, is :mod:`swift_rules.broker.protocol`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from swift_rules.backends import ClusterError
from swift_rules.broker import protocol
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


def run_token(lifetime: float) -> tuple[str, str]:
    """(run name, run token) for one stage job's workers, from the broker's long-lived
    token (``executor.broker.token_file``, or $DASK_BROKER_TOKEN here). It opens only
    the run's endpoints, for ``lifetime`` seconds (``executor.broker.run_token_lifetime``)."""
    try:
        credential = protocol.credential(protocol.read_token())
    except ValueError as err:
        raise ClusterError(f"executor.broker: {err}") from None
    if credential.run is not None:
        raise ClusterError(
            "executor.broker: the broker token here is a run token; a stage job needs the "
            "long-lived token to make one for its workers"
        )
    run = f"run-{secrets.token_hex(6)}"
    return run, protocol.run_token(credential.key, run, float(lifetime))

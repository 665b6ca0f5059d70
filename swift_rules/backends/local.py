"""The Dask clusters of one machine, and the schedulers that run already.

- ``executor.type: local``: a ``LocalCluster`` inside the stage job, one single-threaded
  worker per ``threads``, gone with the job.
- ``executor.type: address``: a client of the scheduler at ``executor.address``; the
  job closes its client and leaves the scheduler running.
"""

from __future__ import annotations

from swift_rules.backends import ClusterError, base
from swift_rules.backends.base import Backend


class LocalBackend(Backend):
    def client(self):
        import dask
        from distributed import Client, LocalCluster
        from distributed.security import Security

        cfg = self.cfg
        processes = cfg.get("processes", True)
        dashboard = cfg.get("dashboard_address")
        # Worker processes talk over loopback ports, which every local user can connect to
        # (and run code as us): mutual TLS with a key made for this cluster, held in memory
        # (docs/security.md). Threads talk in-process (inproc://): no port at all.
        security = Security.temporary() if processes else None
        settings = {**base.KEEP_GLIBC_TRIM, **base.CONSECUTIVE_CHUNKS}
        settings.update({} if dashboard else base.HTTP_HEALTH_ONLY)
        # (the scheduler reads them as it starts; the nannies copy them)
        with dask.config.set(settings):
            cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=dashboard,
                memory_limit=cfg.get("memory_limit", "auto"),
                security=security,
            )
        return Client(cluster, security=security)


class AddressBackend(Backend):
    def client(self):
        from distributed import Client

        address = self.cfg.get("address")
        if not address:
            raise ClusterError("executor type 'address' needs 'address' (e.g. tcp://host:8786)")
        timeout = self.cfg.get("connect_timeout", 30)
        if address.startswith("broker://"):
            from swift_rules.backends.broker import export_token

            export_token(self.cfg)  # the client's token, from executor.broker.token_file
        try:
            return Client(address, timeout=timeout)
        except OSError as err:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} within {timeout} s: {err}"
            ) from err

    def close(self, client) -> None:
        client.close()  # (the scheduler is not ours)

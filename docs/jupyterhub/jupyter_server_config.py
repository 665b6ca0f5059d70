# The single-user server's config in the swift-rules image (environment/Dockerfile.jupyter
# copies it to /etc/jupyter/): what jupyter-server-proxy may reach for the Dask dashboards
# that swift_rules.notebook links to (docs/notebook.md#dask-dashboards).
#
# A stage job's own Dask cluster (executor.type local, htcondor, kubernetes, dirac) has
# its scheduler, and so its dashboard, in the job: on the user's server (this machine or
# pod) for local jobs, linked as {prefix}proxy/PORT/status, which needs nothing here. A
# scheduler elsewhere (executor.type address, a stage job on another machine) is linked as
# {prefix}proxy/HOST:PORT/status and must be allowed: the hub's config sets
# SWIFT_RULES_DASHBOARD_HOSTS (comma-separated host names) for that.
import os

c = get_config()  # noqa: F821 (Jupyter's config loader defines it)

hosts = [h.strip() for h in os.environ.get("SWIFT_RULES_DASHBOARD_HOSTS", "").split(",")]
c.ServerProxy.host_allowlist = ["localhost", "127.0.0.1", *(h for h in hosts if h)]

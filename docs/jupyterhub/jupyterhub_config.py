# JupyterHub for an analysis facility that offers swift-rules (docs/notebook.md#facility-set-up).
#
#     SWIFT_RULES_BACKEND=kubernetes jupyterhub -f jupyterhub_config.py   # or htcondor
#
# - kubernetes: each user's server is a pod (KubeSpawner) of the single-user image
#   (environment/Dockerfile.jupyter), with a volume of their own that Snakemake's job pods
#   (profiles/k8s) and Dask worker pods (executor.type kubernetes) mount at the same path,
#   and a service account that may create those pods.
# - htcondor: each user's server runs as that user on an HTCondor access point (the hub
#   runs there as root), from the environment the single-user image installs; their
#   workflows submit from there (profiles/htcondor, or executor.type htcondor) and their
#   home is on the file system the execute points share.
#
# tests/test_jupyterhub.py loads this file in JupyterHub 6.1 (environment/
# requirements-jupyterhub.txt) for both backends and checks the settings below; no hub
# was started and no server spawned from it (docs/notebook.md says what was not run).
# Lines marked "site:" are the ones a facility changes.

import os

backend = os.environ.get("SWIFT_RULES_BACKEND", "kubernetes")
if backend not in ("kubernetes", "htcondor"):
    raise ValueError(f"SWIFT_RULES_BACKEND must be kubernetes or htcondor, not {backend!r}")

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)

# -- the hub ---------------------------------------------------------------------------------
c.JupyterHub.bind_url = "http://:8000"  # site: behind the facility's TLS proxy
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
# site: the facility's identity provider, e.g. oauthenticator's GenericOAuthenticator with
# INDIGO IAM or CILogon. PAM (the default) suits an access point's local accounts.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allow_all = True  # site: or allowed_users / allowed_groups

# Users land in JupyterLab; the example notebooks are in the image (/opt/swift-rules/notebooks).
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 300  # a first image pull takes minutes
c.Spawner.environment = {
    # Plots of the workflow's jobs need no display.
    "MPLBACKEND": "Agg",
    # swift_rules.notebook links a Dask dashboard through the user's server
    # (jupyter-server-proxy, in the image); dashboards on other hosts need them allowed
    # in the single-user server (docs/jupyterhub/jupyter_server_config.py).
    "SWIFT_RULES_DASHBOARD_HOSTS": "",  # site: e.g. "dask-scheduler.facility.example"
}

# A workflow started from a notebook outlives the kernel and the browser, but not the
# user's server: culling a pod ends the workflows in it. Cull only servers idle for longer
# than the longest workflow (a day here), and keep the culler off servers with kernels busy.
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=86400"],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]

if backend == "kubernetes":
    # -- Kubernetes: a pod per user ----------------------------------------------------------
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.JupyterHub.hub_connect_ip = "hub"  # site: the hub's service name
    # site: environment/Dockerfile.jupyter, built and pushed where the cluster pulls from.
    c.KubeSpawner.image = "ghcr.io/swift/swift-rules-jupyter:0.1.0"
    c.KubeSpawner.namespace = "swift-rules"  # site
    c.KubeSpawner.uid = 1000
    c.KubeSpawner.gid = 100
    c.KubeSpawner.fs_gid = 100
    c.KubeSpawner.cpu_guarantee = 1
    c.KubeSpawner.cpu_limit = 4
    c.KubeSpawner.mem_guarantee = "2G"
    c.KubeSpawner.mem_limit = "8G"
    # May create Snakemake's job pods (profiles/k8s) and Dask worker pods
    # (executor.type kubernetes): a Role with create/get/list/watch/delete on pods (and
    # services, for Dask's scheduler) in the namespace, bound to this account. site
    c.KubeSpawner.service_account = "swift-rules-user"
    c.KubeSpawner.automount_service_account_token = True
    # The user's files: one claim per user, mounted where their job pods mount it too
    # (profiles/k8s: default-storage-provider fs with this path as its prefix).
    c.KubeSpawner.storage_pvc_ensure = True
    c.KubeSpawner.pvc_name_template = "swift-rules-{username}"
    c.KubeSpawner.storage_capacity = "50Gi"  # site
    c.KubeSpawner.storage_class = "standard"  # site: a ReadWriteMany class (CephFS, NFS)
    c.KubeSpawner.storage_access_modes = ["ReadWriteMany"]
    c.KubeSpawner.volumes = [
        {"name": "work", "persistentVolumeClaim": {"claimName": "swift-rules-{username}"}}
    ]
    c.KubeSpawner.volume_mounts = [{"name": "work", "mountPath": "/home/jovyan/work"}]
    c.KubeSpawner.working_dir = "/home/jovyan/work"
else:
    # -- HTCondor: a process per user on the access point -------------------------------------
    # The local process spawner starts each server as the user (the hub runs as root).
    # It stops a server by signalling that process alone: workflows started from a
    # notebook, in a session of their own, go on after the server stops (a spawner that
    # stops a whole cgroup, such as systemdspawner, ends them too).
    c.JupyterHub.spawner_class = "localprocess"
    # site: the environment that environment/Dockerfile.jupyter installs (the same lock),
    # on the access point: swift-rules[notebook,htcondor,...] and jupyterhub.
    c.Spawner.cmd = ["/opt/swift-rules/venv/bin/jupyterhub-singleuser"]
    c.Spawner.notebook_dir = "~"  # the home on the shared file system the execute points see
    c.Spawner.environment.update(
        {
            # profiles/htcondor needs condor_submit on PATH and the pool's configuration.
            "PATH": "/opt/swift-rules/venv/bin:/usr/local/bin:/usr/bin:/bin",
            "CONDOR_CONFIG": "/etc/condor/condor_config",  # site
        }
    )

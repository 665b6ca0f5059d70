"""The facility set-up on paper: docs/jupyterhub/jupyterhub_config.py loads in JupyterHub
(6.1, with KubeSpawner and batchspawner: .venv-jupyterhub, built from PyPI once by
environment/envs.py) for both backends, every option it sets is one the hub, the spawner
or the authenticator knows, and the single-user image (environment/Dockerfile.jupyter)
installs from the lock. No hub is started and no server spawned here; no image is built.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "environment"))
import envs

CONFIG = REPO / "docs" / "jupyterhub" / "jupyterhub_config.py"
SERVER_CONFIG = REPO / "docs" / "jupyterhub" / "jupyter_server_config.py"
DOCKERFILE = REPO / "environment" / "Dockerfile.jupyter"

# Runs in .venv-jupyterhub: load the config as `jupyterhub -f` does, make the spawner and
# the authenticator from it (as the hub does for a user), and report what they hold and
# every config option that no class recognised.
PROBE = r"""
import asyncio, json, logging, sys, types
from traitlets.config import Application
from jupyterhub.app import JupyterHub
from jupyterhub.objects import Hub

unknown = []
class Catch(logging.Handler):
    def emit(self, record):
        msg = record.getMessage()
        if "not recognized" in msg or "Did you mean" in msg:
            unknown.append(msg)

app = JupyterHub()
app.log.addHandler(Catch())
app.load_config_file(sys.argv[1])
spawner_class, authenticator_class = app.spawner_class, app.authenticator_class
user = types.SimpleNamespace(name="alice", escaped_name="alice", id=1, state=None,
                             url="/user/alice/", orm_user=None, spawners={}, settings={},
                             server=None)
async def make():  # KubeSpawner makes its API client in the hub's event loop
    return spawner_class(config=app.config, user=user, hub=Hub(), log=app.log)
spawner = asyncio.run(make())
authenticator = authenticator_class(config=app.config, log=app.log)
out = {
    "spawner": spawner_class.__module__ + "." + spawner_class.__name__,
    "authenticator": authenticator_class.__name__,
    "default_url": spawner.default_url,
    "environment": spawner.environment,
    "cmd": spawner.cmd,
    "services": [s["name"] for s in app.services],
    "roles": [r["name"] for r in app.load_roles],
    "unknown": unknown,
}
if spawner_class.__name__ == "KubeSpawner":
    out.update(image=spawner.image, service_account=spawner.service_account,
               volume_mounts=spawner.volume_mounts, pvc=spawner.pvc_name_template)
print("PROBE " + json.dumps(out, default=str))
"""


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: swift-rules}}]
current-context: none
"""


@pytest.fixture(scope="module")
def hub_python() -> str:
    try:
        venv = envs.ensure("jupyterhub")
    except envs.EnvError as err:
        pytest.fail(str(err))
    return str(venv / "bin" / "python")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["kubernetes", "htcondor"])
def test_jupyterhub_config_loads(hub_python, backend, tmp_path):
    # KubeSpawner reads a kubeconfig when it is made (it contacts no cluster until it spawns).
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    env = {"SWIFT_RULES_BACKEND": backend, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "KUBECONFIG": str(kubeconfig)}  # fmt: skip
    proc = subprocess.run(
        [hub_python, "-c", PROBE, str(CONFIG)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE "))
    out = json.loads(line[len("PROBE ") :])
    assert out["unknown"] == [], out["unknown"]
    assert out["default_url"] == "/lab"
    assert out["environment"]["MPLBACKEND"] == "Agg"
    assert out["services"] == ["idle-culler"] and out["roles"] == ["idle-culler"]
    if backend == "kubernetes":
        assert out["spawner"] == "kubespawner.spawner.KubeSpawner"
        assert out["image"].startswith("ghcr.io/swift/swift-rules-jupyter:")
        assert out["service_account"] == "swift-rules-user"
    else:
        assert out["spawner"] == "jupyterhub.spawner.LocalProcessSpawner"
        assert out["cmd"] == ["/opt/swift-rules/venv/bin/jupyterhub-singleuser"]


def test_unknown_backend_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(CONFIG)], capture_output=True, text=True, timeout=30,
        env={"SWIFT_RULES_BACKEND": "slurm", "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
    )  # fmt: skip
    assert "must be kubernetes or htcondor" in proc.stderr


def test_single_user_image_installs_from_the_lock():
    """On paper: every pip install in the image takes the lock (and the hub's pins) as
    constraints, the hub's pins agree with the lock, and what it copies exists."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM ghcr\.io/swift/swift-rules:[\w.]+$", text, re.M)
    installs = [cmd for cmd in re.split(r"&&|\n(?=RUN)", text) if "pip install" in cmd]
    assert installs
    for cmd in installs:
        assert "--constraint environment/requirements.lock" in cmd, cmd
        assert "--constraint environment/requirements-jupyterhub.txt" in cmd, cmd
    assert '".[analysis,workflow,remote,notebook,htcondor,kubernetes]"' in text
    lock = envs.pins(envs.LOCK)
    hub = envs.pins(envs.JUPYTERHUB)
    assert {n: (v, lock[n]) for n, v in hub.items() if n in lock and lock[n] != v} == {}
    assert "jupyterhub" in hub and re.search(r"\bjupyterhub\b(?!_)", text)
    for src in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO / path).exists(), path
    # The single-user server's own config: jupyter-server-proxy may reach the dashboards.
    cfg = _Config()
    exec(
        compile(SERVER_CONFIG.read_text(), str(SERVER_CONFIG), "exec"), {"get_config": lambda: cfg}
    )
    assert "localhost" in cfg.ServerProxy.host_allowlist


class _Config:
    """Enough of traitlets' config object for a config file that only assigns."""

    def __getattr__(self, name):
        value = _Section()
        object.__setattr__(self, name, value)
        return value


class _Section:
    pass


def test_lock_pins_the_notebook_extra():
    lock = envs.pins(envs.LOCK)
    for name in ("jupyterlab", "ipywidgets", "ipykernel", "nbclient", "jupyter-server-proxy",
                 "bokeh", "selenium"):  # fmt: skip
        assert name in lock, name
    assert Path(REPO / "environment" / "requirements-jupyterhub.txt").exists()

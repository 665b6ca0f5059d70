"""A real DiracX 0.7.0 server on loopback for the DIRAC tests (about 10 s to start).

The server runs from its own environment (.venv-diracx, built by environment/envs.py
from environment/requirements-diracx.txt): moto_server stands in for the S3 sandbox
store, sqlite files for the databases, a local git repository for the configuration.
Tokens are minted with the server's signing key: the user's (NormalUser) and the
site harness's (JobAdministrator, NormalUser). Nothing is reachable
from outside 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from helpers import REPO

sys.path.insert(0, str(REPO / "environment"))
import envs

VO, GROUP, USER, SUB = "swift", "swift_user", "alice", "6a1c1c4e-0000-4000-8000-000000000001"
SETUP = Path(__file__).with_name("dirac_server_setup.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DiracXServer:
    url: str
    root: Path
    venv: Path
    jobdb: Path
    procs: list = field(default_factory=list)

    def mint(self, properties: str, lifetime: int = 3600) -> str:
        """An access token signed with the server's key (as diracx.logic's create_token
        signs them): the server checks only the signature and the issuer."""
        from joserfc import jwt
        from joserfc.jwk import KeySet

        keys = KeySet.import_key_set(json.loads((self.root / "keys.json").read_text()))
        key = next(k for k in keys.keys if "sign" in (k.get("key_ops") or []))
        claims = {
            "jti": str(uuid.uuid4()), "exp": int(time.time()) + int(lifetime),
            "dirac_policies": {}, "sub": SUB, "vo": VO, "iss": self.url,
            "dirac_properties": properties.split(","), "preferred_username": USER,
            "dirac_group": GROUP,
        }  # fmt: skip
        return jwt.encode({"alg": key.get("alg"), "kid": key.kid}, claims, keys, [key.get("alg")])

    def credentials(self, name: str, properties: str = "NormalUser", lifetime=3600) -> Path:
        """A DiracX credentials file (as `dirac login` writes) with a fresh token."""
        from diracx.core.models.auth import TokenResponse
        from diracx.core.utils import write_credentials

        path = self.root / f"{name}.json"
        token = TokenResponse(access_token=self.mint(properties, lifetime), expires_in=lifetime)
        write_credentials(token, location=path)
        return path

    def states(self, ids=None) -> dict[str, str]:
        """{job id: status} of every job (or of ``ids``), read as a job administrator."""
        from swift_rules.dirac.transport import DiracXTransport

        if not hasattr(self, "_admin"):
            self._admin = DiracXTransport(self.url, self.credentials("admin", "JobAdministrator"))
        body = {"parameters": ["JobID", "Status"], "per_page": 10000}
        if ids is not None:
            body["search"] = [{"parameter": "JobID", "operator": "in",
                               "values": [int(i) for i in ids]}]  # fmt: skip
        rows = self._admin._call("search", lambda c: c.jobs.search(**body))
        return {str(r["JobID"]): r["Status"] for r in rows}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _run(cmd: list, root: Path, env=None) -> str:
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready within {timeout} s: {log.read_text()[-3000:]}")


def start(root: Path) -> DiracXServer:
    venv = envs.ensure("diracx")
    bin_ = venv / "bin"
    root.mkdir(parents=True, exist_ok=True)
    base_env = {"PATH": f"{bin_}:{os.environ['PATH']}", "HOME": str(root)}
    out = _run([bin_ / "python", SETUP, root, VO, GROUP, USER, SUB], REPO, base_env)
    env = {**base_env, **json.loads(out.strip().splitlines()[-1])}
    cs = f"git+file://{root}/cs"
    s3_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env.update({
        "DIRACX_CONFIG_BACKEND_URL": cs,
        "DIRACX_SERVICE_AUTH_TOKEN_KEYSTORE": f"file://{root}/keys.json",
        "DIRACX_SERVICE_AUTH_STATE_KEY": base64_key(),
        "DIRACX_SERVICE_AUTH_TOKEN_ISSUER": url,
        "DIRACX_SERVICE_AUTH_ALLOWED_REDIRECTS": json.dumps([f"{url}/"]),
        "DIRACX_SANDBOX_STORE_BUCKET_NAME": "sandboxes",
        "DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET": "true",
        "DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS": json.dumps({
            "endpoint_url": f"http://127.0.0.1:{s3_port}", "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing"}),
    })  # fmt: skip
    server = DiracXServer(url=url, root=root, venv=venv, jobdb=root / "db" / "jobdb.db")
    try:
        moto_log = root / "moto.log"
        moto = subprocess.Popen(
            [bin_ / "moto_server", "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=open(moto_log, "w"), stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        server.procs.append(moto)
        _wait(f"http://127.0.0.1:{s3_port}/moto-api/", moto, moto_log)
        log = root / "server.log"
        app = subprocess.Popen(
            [bin_ / "uvicorn", "--factory", "diracx.testing.routers:create_app",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=root,
        )  # fmt: skip
        server.procs.append(app)
        _wait(f"{url}/api/health/ready", app, log)
    except BaseException:
        server.stop()
        raise
    return server


def base64_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()

"""How JDL jobs reach DIRAC: a small interface, over DiracX's REST API or the classic CLI.

A transport submits a job (JDL fields plus the local files of its input sandbox),
reports the state of many jobs in one call, kills jobs and fetches output sandboxes.
``DiracXTransport`` uses DiracX's Python client (diracx-client) with a token from a
DiracX credentials file (``dirac login`` writes one). ``ClassicTransport`` runs the
classic ``dirac-wms-job-*`` commands with the user's proxy; it serves sites without
DiracX and is not exercised by the tests (no classic DIRAC services run here).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from swift_rules.dirac.jdl import format_jdl
from swift_rules.errors import SwiftError

# States after which a job changes no more; the executor maps them to success/failure.
FINAL = frozenset({"Done", "Completed", "Failed", "Killed", "Deleted"})


class DiracError(SwiftError):
    """DIRAC refused or failed a request."""


class DiracAuthError(DiracError):
    """The token or proxy is missing, expired or refused: retrying cannot help."""


class DiracUnreachable(DiracError):
    """No answer from the DIRAC server (network, server down)."""


@dataclass(frozen=True)
class JobState:
    status: str
    minor: str = ""
    application: str = ""

    def reason(self) -> str:
        parts = [p for p in (self.minor, self.application) if p and p != "Unknown"]
        return f"{self.status}" + (f" ({'; '.join(parts)})" if parts else "")


class Transport(Protocol):
    def check(self) -> str:
        """Who we are to the server (an error if the credentials do not work)."""

    def submit(self, fields: Mapping, files: Mapping[str, Path]) -> str:
        """Submit one job; ``files`` (name in the sandbox -> local path) form its input
        sandbox. Returns the job id."""

    def status(self, ids: Iterable[str]) -> dict[str, JobState]:
        """The states of ``ids``, in one request (jobs the server does not know are
        left out)."""

    def kill(self, ids: Iterable[str]) -> None:
        """Kill jobs (those already final are left alone)."""

    def output(self, job_id: str, dest: Path) -> list[Path]:
        """Download and unpack a job's output sandbox into ``dest``."""


def pack(files: Mapping[str, Path]) -> bytes:
    """A tar.bz2 of ``files`` under their sandbox names (symlinks followed)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        for name, path in sorted(files.items()):
            tar.add(str(Path(path).resolve()), arcname=name, recursive=True)
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        tar.extractall(dest, filter="data")
    return [dest / n for n in names]


def token_problem(credentials: Path) -> str | None:
    """Why the DiracX credentials file cannot work (None: it looks usable)."""
    if not credentials.is_file():
        return f"no DiracX credentials file at {credentials}"
    try:
        data = json.loads(credentials.read_text())
        expires = float(data["expires_on"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"the DiracX credentials file {credentials} is not valid ({err})"
    if expires <= time.time() and not data.get("refresh_token"):
        when = datetime.fromtimestamp(expires, tz=UTC).isoformat(timespec="seconds")
        return f"the DiracX token in {credentials} expired at {when}"
    return None


class DiracXTransport:
    """DiracX's REST API through diracx-client (one client, reused for every call)."""

    def __init__(self, url: str, credentials: str | Path, timeout: float = 30):
        self.url = url.rstrip("/")
        self.credentials = Path(credentials).expanduser()
        self.timeout = timeout
        self._client = None

    def _fail(self, err: Exception, what: str) -> DiracError:
        from azure.core.exceptions import HttpResponseError, ServiceRequestError

        status = getattr(err, "status_code", None)
        if isinstance(err, HttpResponseError) and status in (401, 403):
            why = token_problem(self.credentials) or f"HTTP {status}: {_detail(err)}"
            return DiracAuthError(
                f"DiracX at {self.url} refused the token from {self.credentials} ({why}) "
                f"while trying to {what}: renew it with `dirac login` (or point "
                "--dirac-credentials / DIRACX_CREDENTIALS_PATH at a valid one)"
            )
        if isinstance(err, HttpResponseError) and status is not None:
            return DiracError(f"DiracX at {self.url} could not {what}: HTTP {status}: "
                              f"{_detail(err)}")  # fmt: skip
        connect = "connect" in type(err).__name__.lower()  # httpx2's ConnectError...
        if isinstance(err, ServiceRequestError | OSError) or connect:
            return DiracUnreachable(f"cannot reach DiracX at {self.url} to {what}: {err}")
        return DiracError(f"DiracX at {self.url} could not {what}: {err}")

    @property
    def client(self):
        if self._client is None:
            problem = token_problem(self.credentials)
            if problem:
                raise DiracAuthError(f"{problem}: log in with `dirac login` first")
            try:
                from diracx.client.sync import SyncDiracClient
                from diracx.core.preferences import DiracxPreferences
            except ImportError as err:
                raise DiracError(
                    f"talking to DiracX needs diracx-client: pip install 'swift-rules[dirac]' "
                    f"({err})"
                ) from err

            prefs = DiracxPreferences(url=self.url, credentials_path=self.credentials)
            try:
                # One retry at most: a dead server must fail fast, not after minutes.
                self._client = SyncDiracClient(
                    endpoint=self.url, diracx_preferences=prefs, retry_total=1,
                    retry_backoff_factor=0.2, connection_timeout=self.timeout,
                    read_timeout=self.timeout,
                )  # fmt: skip
            except Exception as err:
                raise self._fail(err, "connect") from err
        return self._client

    def _call(self, what: str, fn, *args, **kwargs):
        client = self.client
        try:
            return fn(client, *args, **kwargs)
        except DiracError:
            raise
        except Exception as err:
            raise self._fail(err, what) from err

    def check(self) -> str:
        info = self._call("read the user's identity", lambda c: c.auth.userinfo())
        return f"{info.preferred_username} ({info.vo}, group {info.dirac_group})"

    def _upload(self, client, data: bytes) -> str:
        import httpx
        from diracx.client.models import SandboxInfo

        info = SandboxInfo(
            checksum_algorithm="sha256", checksum=hashlib.sha256(data).hexdigest(),
            size=len(data), format="tar.bz2",
        )  # fmt: skip
        res = client.jobs.initiate_sandbox_upload(info)
        if res.url:  # (no url: the same sandbox is already stored)
            resp = httpx.post(res.url, data=res.fields, files={"file": ("file", data)},
                              timeout=self.timeout)  # fmt: skip
            resp.raise_for_status()
        return res.pfn

    def submit(self, fields: Mapping, files: Mapping[str, Path]) -> str:
        def go(client):
            jdl = dict(fields)
            if files:
                jdl["InputSandbox"] = [self._upload(client, pack(files))]
            return client.jobs.submit_jdl_jobs([format_jdl(jdl)])

        inserted = self._call("submit a job", go)
        return str(inserted[0].job_id)

    def status(self, ids: Iterable[str]) -> dict[str, JobState]:
        ids = sorted({int(i) for i in ids})
        if not ids:
            return {}
        body = {
            "parameters": ["JobID", "Status", "MinorStatus", "ApplicationStatus"],
            "search": [{"parameter": "JobID", "operator": "in", "values": ids}],
            "per_page": max(100, len(ids)),
        }
        rows = self._call("read job states", lambda c: c.jobs.search(**body))
        return {
            str(r["JobID"]): JobState(r["Status"], r.get("MinorStatus") or "",
                                      r.get("ApplicationStatus") or "")
            for r in rows
        }  # fmt: skip

    def kill(self, ids: Iterable[str]) -> None:
        live = [i for i, s in self.status(ids).items() if s.status not in FINAL]
        if not live:
            return
        now = datetime.now(tz=UTC).isoformat()
        update = {
            int(i): {now: {"Status": "Killed", "MinorStatus": "Killed by the user",
                           "Source": "swift-rules"}}
            for i in live
        }  # fmt: skip
        self._call("kill jobs", lambda c: c.jobs.set_job_statuses(update))

    def output(self, job_id: str, dest: Path) -> list[Path]:
        return self.download(job_id, "output", dest)

    def download(self, job_id: str, kind: str, dest: Path) -> list[Path]:
        """Unpack a job's ``kind`` ("input" or "output") sandboxes into ``dest``."""

        def go(client):
            pfns = client.jobs.get_job_sandbox(int(job_id), kind)
            return [p for pfn in pfns for p in self._fetch(client, pfn, dest)]

        return self._call(f"download the {kind} sandbox of job {job_id}", go)

    def fetch(self, pfn: str, dest: Path) -> list[Path]:
        """Unpack the sandbox ``pfn`` (``SB:...``, as a JDL names it) into ``dest``."""
        return self._call(f"download the sandbox {pfn}", self._fetch, pfn, dest)

    def _fetch(self, client, pfn: str, dest: Path) -> list[Path]:
        import httpx

        res = client.jobs.get_sandbox_file(pfn=pfn)
        resp = httpx.get(res.url, timeout=self.timeout)
        resp.raise_for_status()
        return unpack(resp.content, dest)


def _detail(err) -> str:
    try:
        return str(err.response.json().get("detail", err.message))
    except Exception:
        return str(getattr(err, "message", err))


class ClassicTransport:
    """The classic DIRAC client commands (``dirac-wms-job-*``) with the user's proxy.

    Not tested here: it needs DIRAC's services and a grid proxy.
    """

    def __init__(self, workdir: Path, timeout: float = 120):
        self.workdir = Path(workdir)
        self.timeout = timeout

    def _run(self, *cmd: str, cwd: Path | None = None) -> str:
        if shutil.which(cmd[0]) is None:
            raise DiracError(f"{cmd[0]} is not on PATH: set up the DIRAC client (diracos)")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                              timeout=self.timeout)  # fmt: skip
        text = proc.stdout + proc.stderr
        if proc.returncode != 0:
            if "proxy" in text.lower():
                raise DiracAuthError(f"{cmd[0]}: no valid proxy ({text.strip()[-500:]}); "
                                     "run dirac-proxy-init")  # fmt: skip
            raise DiracError(f"{' '.join(cmd[:2])} failed: {text.strip()[-1000:]}")
        return proc.stdout

    def check(self) -> str:
        return self._run("dirac-proxy-info").strip().splitlines()[0]

    def submit(self, fields: Mapping, files: Mapping[str, Path]) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix="submit-", dir=self.workdir))
        for name, path in files.items():  # the command uploads local InputSandbox files
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, stage / name)
        jdl = dict(fields)
        jdl["InputSandbox"] = sorted(files)
        (stage / "job.jdl").write_text(format_jdl(jdl))
        out = self._run("dirac-wms-job-submit", "job.jdl", cwd=stage)
        match = re.search(r"JobID\s*=\s*(\d+)", out)
        if not match:
            raise DiracError(f"dirac-wms-job-submit gave no JobID: {out.strip()[-500:]}")
        return match.group(1)

    def status(self, ids: Iterable[str]) -> dict[str, JobState]:
        ids = sorted(set(map(str, ids)))
        if not ids:
            return {}
        out = self._run("dirac-wms-job-status", *ids)
        states = {}
        for line in out.splitlines():  # JobID=1 Status=Done; MinorStatus=...; Site=...
            fields = dict(re.findall(r"(\w+)=([^;]*)", line))
            if "JobID" in fields and "Status" in fields:
                states[fields["JobID"].strip()] = JobState(
                    fields["Status"].strip(), fields.get("MinorStatus", "").strip(),
                    fields.get("ApplicationStatus", "").strip(),
                )  # fmt: skip
        return states

    def kill(self, ids: Iterable[str]) -> None:
        ids = sorted(set(map(str, ids)))
        if ids:
            self._run("dirac-wms-job-kill", *ids)

    def output(self, job_id: str, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        before = set(dest.rglob("*"))
        self._run("dirac-wms-job-get-output", "-D", str(dest), str(job_id))
        return sorted(p for p in set(dest.rglob("*")) - before if p.is_file())

"""A grid site and its pilots, for the DIRAC tests: runs the jobs of a real DiracX server.

DiracX 0.7.0 alone moves no job past ``Received`` (no optimizers, no matcher, no
pilots), so this harness does what they would, with a job-administrator token:
Received -> Waiting; takes Waiting jobs (up to ``slots`` at once) -> Matched ->
Running; fetches the input sandbox; runs the JDL's Executable with its Arguments
(the JDL as submitted, read from the server's job database: the API does not return
it) writing StdOutput/StdError; uploads the OutputSandbox files; Completing -> Done,
or Failed with the exit code. A job the user kills while it runs has its process
killed. Knobs for the failure tests: ``hold`` (matching job names are never
started), ``kill`` (matching jobs are killed by the "batch system" once running:
Stalled for ``stall_s`` seconds, then Failed, as DIRAC reports a lost pilot) and
``tamper`` (a hostile worker node: ``tamper(name, folder)`` may change a job's files
before its output sandbox is uploaded).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from swift_rules.dirac.jdl import parse_jdl
from swift_rules.dirac.transport import DiracXTransport, pack

WAITING = ["Received", "Checking", "Waiting"]


class Site:
    def __init__(self, url: str, admin_credentials: Path, jobdb: Path, workdir: Path,
                 env: dict, slots: int = 4, poll: float = 0.2):  # fmt: skip
        self.dirac = DiracXTransport(url, admin_credentials)
        self.jobdb, self.workdir, self.env = jobdb, workdir, env
        self.slots, self.poll = slots, poll
        self.hold: list[Callable[[str], bool]] = []
        self.kill: list[Callable[[str], bool]] = []
        self.tamper: list[Callable[[str, Path], None]] = []
        self.stall_s = 2.0  # how long a job killed by the site stays Stalled
        self.ran: dict[str, dict] = {}  # job id -> {"name", "jdl", "rc", "dir"}
        self.errors: list[str] = []
        self._procs: dict[str, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._loop_thread = threading.Thread(target=self._loop, daemon=True, name="dirac-site")

    def start(self) -> Site:
        self._loop_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._loop_thread.join(30)
        for proc in list(self._procs.values()):
            _kill(proc)
        for t in self._threads:
            t.join(30)

    # --- the pilot's side of the API ---------------------------------------------------

    def _set(self, job_id: str, *states: tuple[str, str, str]) -> None:
        """Walk ``states`` in order (Status, MinorStatus, ApplicationStatus)."""
        t0 = datetime.now(tz=UTC)
        update = {
            int(job_id): {
                (t0 + timedelta(microseconds=k)).isoformat(): {
                    "Status": s, "MinorStatus": m, "ApplicationStatus": a or "Unknown",
                    "Source": "test-site",
                }
                for k, (s, m, a) in enumerate(states)
            }
        }  # fmt: skip
        self.dirac._call("set job states", lambda c: c.jobs.set_job_statuses(update))

    def _search(self, statuses: list[str]) -> list[dict]:
        body = {
            "parameters": ["JobID", "Status", "JobName"],
            "search": [{"parameter": "Status", "operator": "in", "values": statuses}],
            "per_page": 1000,
        }
        return self.dirac._call("search jobs", lambda c: c.jobs.search(**body))

    def jdl(self, job_id: str) -> dict:
        """The JDL as submitted (from the server's job database)."""
        with sqlite3.connect(self.jobdb) as db:
            (blob,) = db.execute(
                "SELECT OriginalJDL FROM JobJDLs WHERE JobID = ?", (int(job_id),)
            ).fetchone()
        return parse_jdl(zlib.decompress(base64.b64decode(blob)).decode())

    # --- the site -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as err:  # recorded; the tests show these on failure
                self.errors.append(repr(err))
            self._stop.wait(self.poll)

    def _step(self) -> None:
        rows = self._search(WAITING)
        for row in rows:
            if row["Status"] != "Waiting":
                self._set(str(row["JobID"]), ("Waiting", "Pilot Agent Submission", ""))
        with self._lock:
            busy = sum(t.is_alive() for t in self._threads)  # one thread per job
            live = list(self._procs)
        # Jobs killed by their owner while running: kill the process, as a pilot would.
        if live:
            for job_id, state in self.dirac.status(live).items():
                if state.status == "Killed":
                    _kill(self._procs.get(job_id))
        for row in sorted(rows, key=lambda r: r["JobID"]):
            job_id, name = str(row["JobID"]), str(row.get("JobName") or "")
            if job_id in self.ran or any(h(name) for h in self.hold) or busy >= self.slots:
                continue
            self.ran[job_id] = {"name": name, "matched": time.monotonic()}
            busy += 1
            self._set(job_id, ("Matched", "Assigned", ""), ("Running", "Job Initialization", ""))
            t = threading.Thread(target=self._run, args=(job_id, name), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, job_id: str, name: str) -> None:
        try:
            self._execute(job_id, name)
        except Exception as err:
            self.errors.append(f"job {job_id}: {err!r}")
            self._set(job_id, ("Failed", "Site harness error", str(err)[:200]))

    def _execute(self, job_id: str, name: str) -> None:
        jdl = self.jdl(job_id)
        folder = self.workdir / f"job-{job_id}"
        folder.mkdir(parents=True)
        self.ran[job_id].update(jdl=jdl, dir=folder)
        # The optimizers' job, in DIRAC: the JDL's SB: entries are the input sandboxes.
        for pfn in jdl.get("InputSandbox", []):
            if pfn.startswith("SB:"):
                self.dirac.fetch(pfn, folder)
        exe = folder / jdl["Executable"]
        if exe.exists():
            exe.chmod(0o755)
        cmd = [str(exe) if exe.exists() else jdl["Executable"],
               *shlex.split(jdl.get("Arguments", ""))]  # fmt: skip
        with (open(folder / jdl.get("StdOutput", "std.out"), "wb") as out,
              open(folder / jdl.get("StdError", "std.err"), "wb") as err):  # fmt: skip
            proc = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=err,
                                    env=self.env, start_new_session=True)  # fmt: skip
            with self._lock:
                self._procs[job_id] = proc
            self._set(job_id, ("Running", "Application", "Running"))
            if any(k(name) for k in self.kill):
                time.sleep(1)
                _kill(proc)
                self._set(job_id, ("Stalled", "Job stalled: pilot not running", ""))
                with self._lock:
                    self._procs.pop(job_id, None)
                self.ran[job_id]["rc"] = "killed"
                # Stalled for stall_s seconds (unless its owner kills it), then Failed.
                deadline = time.monotonic() + self.stall_s
                while time.monotonic() < deadline:
                    if self.dirac.status([job_id])[job_id].status == "Killed":
                        return
                    time.sleep(self.poll)
                self._set(job_id, ("Failed", "Stalled: pilot killed by the batch system", ""))
                return
            rc = proc.wait()
        with self._lock:
            self._procs.pop(job_id, None)
        self.ran[job_id].update(rc=rc, ended=time.monotonic())
        if self.dirac.status([job_id])[job_id].status == "Killed":
            return  # killed by its owner: no output sandbox, no further state
        for tamper in self.tamper:
            tamper(name, folder)
        files = {f: folder / f for f in jdl.get("OutputSandbox", []) if (folder / f).exists()}
        if files:
            pfn = self.dirac._call("upload", lambda c: self.dirac._upload(c, pack(files)))
            # (the generated client sends the str as it is: the body must be JSON already)
            body = json.dumps(pfn)
            self.dirac._call("assign", lambda c: c.jobs.assign_sandbox_to_job(int(job_id), body))
        if rc == 0:
            self._set(job_id, ("Completing", "Uploading Output Sandbox", ""),
                      ("Done", "Execution Complete", "Finished"))  # fmt: skip
        else:
            self._set(job_id, ("Failed", "Application Finished With Errors",
                               f"Command exited with status {rc}"))  # fmt: skip


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

"""The separate environments of the REANA and engine checks, built once and reused.

    python environment/envs.py reana-client    # .venv-reana/: reana-client 0.9.6
    python environment/envs.py reana-client-0.95  # .venv-reana-0.95/: reana-client 0.95.0a3
    python environment/envs.py snakemake7      # .venv-snakemake7/: Snakemake 7.32.4 + swift-rules
    python environment/envs.py snakemake8      # .venv-snakemake8/: Snakemake 8.27.1 + swift-rules
    python environment/envs.py diracx          # .venv-diracx/: a DiracX 0.7.0 test server
    python environment/envs.py root            # .venv-root/: ROOT 6.40 (the H->tautau reference)
    python environment/envs.py jupyterhub      # .venv-jupyterhub/: JupyterHub 6.1 + spawners

reana-client pins old dependencies (jsonschema<4, ...) that clash with the project's;
REANA 0.9's engine runs Snakemake 7.32.4 and the 0.95 line's Snakemake 8.27.1, which the
project's lock (Snakemake 9) cannot hold: each gets its own virtual environment at the
repository root, from the pinned files beside this script (an engine's environment: its
requirements file, with the lock as constraints for everything else). An environment is
rebuilt when one of the files it is built from changes (their hash is stamped in it);
builds take a lock, so concurrent test runs wait for one build instead of racing. Needs
PyPI (pip's configured index).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = ROOT / "environment"
LOCK = ENVIRONMENT / "requirements.lock"
SNAKEMAKE7 = ENVIRONMENT / "requirements-snakemake7.txt"
SNAKEMAKE8 = ENVIRONMENT / "requirements-snakemake8.txt"
REANA_CLIENT = ENVIRONMENT / "requirements-reana-client.txt"
REANA_CLIENT_095 = ENVIRONMENT / "requirements-reana-client-0.95.txt"
DIRACX = ENVIRONMENT / "requirements-diracx.txt"
ROOT_REQUIREMENTS = ENVIRONMENT / "requirements-root.txt"
JUPYTERHUB = ENVIRONMENT / "requirements-jupyterhub.txt"
PIP = "pip==26.3"

# name -> (directory, files it is built from)
ENVS = {
    "reana-client": (ROOT / ".venv-reana", [REANA_CLIENT]),
    # REANA's next line (0.95, pre-releases only on PyPI), with its Snakemake 8.27.1.
    "reana-client-0.95": (ROOT / ".venv-reana-0.95", [REANA_CLIENT_095]),
    "snakemake7": (ROOT / ".venv-snakemake7", [SNAKEMAKE7, LOCK, ROOT / "pyproject.toml"]),
    "snakemake8": (ROOT / ".venv-snakemake8", [SNAKEMAKE8, LOCK, ROOT / "pyproject.toml"]),
    # The DIRAC tests' server (its pins clash with the project's; the client is in .venv).
    "diracx": (ROOT / ".venv-diracx", [DIRACX]),
    # ROOT from PyPI, for the independent RDataFrame reference of the H->tautau analysis.
    "root": (ROOT / ".venv-root", [ROOT_REQUIREMENTS]),
    # A facility's hub, to load docs/jupyterhub/jupyterhub_config.py in (tests/test_jupyterhub.py).
    "jupyterhub": (ROOT / ".venv-jupyterhub", [JUPYTERHUB]),
}
# Environments installed from their one requirements file alone.
PLAIN = {
    "reana-client": REANA_CLIENT, "reana-client-0.95": REANA_CLIENT_095, "diracx": DIRACX,
    "root": ROOT_REQUIREMENTS, "jupyterhub": JUPYTERHUB,
}  # fmt: skip
# Environments of another Snakemake beside swift-rules and its analysis dependencies:
# the engine's requirements file, with the lock as constraints for everything else.
ENGINES = {"snakemake7": SNAKEMAKE7, "snakemake8": SNAKEMAKE8}
# swift-rules' extras in an engine's environment: what the image has but for the remote
# inputs (the analysis steps, and rocrate for the run's crate); its snakemake is the
# engine's own.
ENGINE_EXTRAS = "analysis,workflow"
STAMP = ".swift-rules-env"
KEEP = {".gitignore", ".build.lock"}


class EnvError(RuntimeError):
    pass


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file: {normalised name: version}."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[normalise(name.split("[", 1)[0])] = version.strip()
    return out


def constraints(requirements: Path) -> str:
    """The lock without the packages that ``requirements`` (an engine's file) overrides."""
    overridden = set(pins(requirements))
    lines = [
        line
        for line in LOCK.read_text().splitlines()
        if "==" not in line or normalise(line.split("==", 1)[0]) not in overridden
    ]
    return "\n".join(lines) + "\n"


def python_for_envs() -> str:
    """The interpreter the environments are made with (Snakemake 7 needs Python < 3.12,
    Snakemake 8 Python >= 3.11)."""
    return os.environ.get("SWIFT_RULES_ENV_PYTHON") or sys.executable


def _hash(name: str) -> str:
    digest = hashlib.sha256(name.encode())
    for path in ENVS[name][1]:
        digest.update(path.read_bytes())
    digest.update(python_for_envs().encode())
    if name in ENGINES:
        digest.update(ENGINE_EXTRAS.encode())
    return digest.hexdigest()


def _run(cmd: list[str], log) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise EnvError(f"command failed ({proc.returncode}): {' '.join(cmd)}")


def _install(name: str, venv: Path, log) -> None:
    python = str(venv / "bin" / "python")
    _run([python_for_envs(), "-m", "venv", str(venv)], log)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    _run([*pip, PIP], log)
    if name in PLAIN:
        _run([*pip, "--requirement", str(PLAIN[name])], log)
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(constraints(ENGINES[name]))
        try:
            _run(
                [*pip, "--constraint", f.name, "--requirement", str(ENGINES[name]),
                 "--editable", f"{ROOT}[{ENGINE_EXTRAS}]"],
                log,
            )  # fmt: skip
        finally:
            os.unlink(f.name)
    _run([python, "-m", "pip", "check"], log)


def ensure(name: str) -> Path:
    """The environment's directory, built first if absent or out of date."""
    venv, _ = ENVS[name]
    venv.mkdir(exist_ok=True)
    # Never part of the repository (the directory ignores itself, as venvs of Python 3.13 do).
    (venv / ".gitignore").write_text("*\n")
    wanted = _hash(name)
    with open(venv / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = venv / STAMP
        if stamp.exists() and stamp.read_text() == wanted:
            return venv
        for child in venv.iterdir():
            if child.name in KEEP:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        log_path = venv / "build.log"
        with open(log_path, "w") as log:
            try:
                _install(name, venv, log)
            except EnvError as err:
                tail = log_path.read_text()[-4000:]
                raise EnvError(
                    f"cannot build the {name} environment in {venv} (is PyPI reachable?): "
                    f"{err}\n--- {log_path} (end) ---\n{tail}"
                ) from None
        stamp.write_text(wanted)
    return venv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", choices=sorted(ENVS))
    args = parser.parse_args(argv)
    for name in args.names:
        print(ensure(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rerun a workflow from its crate, in a fresh folder, and compare every output.

The crate holds the workflow's file and its whole config (with every default). The
rerun runs that workflow with that config in a new working directory, so that every
relative path (results, generated inputs) is the same string as in the first run and the
result files can be the same bytes: local inputs the workflow does not make are linked
there from the first run's directory (after checking their recorded checksums);
generated inputs are generated anew. Then each output's checksum is compared with the
recorded one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from swift_rules.crate import (
    CONFIG_COPY,
    CrateError,
    compare,
    read_crate,
    recorded_checksums,
    sha256,
)  # fmt: skip

__all__ = ["rerun"]


def _first_run_directory(results: Path, config: dict) -> Path:
    """The working directory of the first run: ``results`` less config ``results``."""
    parts = Path(config["results"]).parts
    if Path(config["results"]).is_absolute() or results.parts[-len(parts) :] != parts:
        raise CrateError(f"{results} is not the folder config results ({config['results']}) "
                         "of the run it records")  # fmt: skip
    return Path(*results.parts[: -len(parts)]) if len(results.parts) > len(parts) else Path("/")


def _workflow_file(crate: dict) -> Path:
    graph = {e["@id"]: e for e in crate["@graph"]}
    main = graph[graph["./"]["mainEntity"]["@id"]]
    url = main.get("url", "")
    if not url.startswith("file://"):
        raise CrateError("the crate does not say where the workflow file is")
    return Path(url[len("file://") :])


def _link_inputs(crate: dict, first: Path, outdir: Path) -> None:
    """Link the first run's local inputs into the rerun's folder, each checked first."""
    for entity in crate["@graph"]:
        if not str(entity.get("@id", "")).startswith("#input:"):
            continue
        relative = entity["@id"][len("#input:") :]
        source, target = first / relative, outdir / relative
        if Path(relative).is_absolute() or not source.is_file() or target.exists():
            continue  # absolute paths are read where they are; missing ones regenerated
        if "sha256" in entity and sha256(source) != entity["sha256"]:
            raise CrateError(f"input {source} changed since the run: its checksum differs")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source.resolve())


def rerun(results: str | Path, *, workdir: str | Path | None = None, cores: int | None = None,
          snakemake: str = "snakemake") -> tuple[dict, Path]:  # fmt: skip
    """Rerun the run recorded in ``results``; ``({"missing", "different", "extra"}, the
    rerun's results folder)``."""
    results = Path(results).resolve()
    crate = read_crate(results)
    config = json.loads((results / CONFIG_COPY).read_text())
    first = _first_run_directory(results, config)
    outdir = Path(workdir).resolve() if workdir else results.with_name(results.name + "-rerun")
    if (outdir / config["results"]).exists():
        raise CrateError(f"{outdir / config['results']} exists: rerun into a fresh folder")
    outdir.mkdir(parents=True, exist_ok=True)
    _link_inputs(crate, first, outdir)
    (outdir / "config.json").write_text(json.dumps(config))
    env = dict(os.environ)
    # The first run's modules (stages next to its workflow) import as they did there.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(first), env.get("PYTHONPATH")) if p)
    cmd = [snakemake, "--snakefile", str(_workflow_file(crate)), "--directory", str(outdir),
           "--configfile", str(outdir / "config.json"), "--cores", str(cores or "all")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CrateError(f"the rerun failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    new_results = outdir / config["results"]
    return compare(recorded_checksums(crate), new_results), new_results

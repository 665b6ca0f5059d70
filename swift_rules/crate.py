"""The provenance of a run as a Workflow Run RO-Crate: ``RESULTS/ro-crate-metadata.json``.

The crate (https://w3id.org/ro/wfrun/workflow/0.5, built with ro-crate-py) says what a
reviewer needs to check a run from the files alone: the workflow and its config (a copy,
``run/config.json``), the swift-rules version and the workflow's git commit, each stage's
registered variants, code fingerprint and the variant that ran, the software versions,
the inputs (local files with checksums and event counts, remote files with their URLs and
event counts), every output with its checksum, the engine and its version, where the jobs
ran (executors and hosts, from the jobs' run records) and when.

``verify`` checks a results folder against its crate (every file present, every checksum
equal); ``swift-rules rerun`` reruns the workflow from the recorded config into a fresh
folder and compares its outputs with the recorded ones.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote

from swift_rules.errors import SwiftError

__all__ = [
    "CRATE_FILE",
    "CrateError",
    "compare",
    "read_crate",
    "result_files",
    "verify",
    "write_crate",
]

log = logging.getLogger(__name__)

CRATE_FILE = "ro-crate-metadata.json"
CONFIG_COPY = "run/config.json"
# What under the results folder is no result: how and when the jobs ran, and the crate.
NOT_RESULTS = ("logs/", "run/", CRATE_FILE, "report.html")
# The terms of ours in the crate (the RO-Crate context defines schema.org's and
# bioschemas'), under the project's own namespace.
TERMS_BASE = "https://w3id.org/swift-rules/terms#"
TERMS = ("codeFingerprint", "dataset", "engine", "executors", "hosts", "numberOfEvents",
         "registeredVariants", "skippedFiles", "softwareApplications", "sourceEvents",
         "stages", "variantRun")  # fmt: skip
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": ("Process Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/workflow/0.5": ("Workflow Run Crate", "0.5"),
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": ("Workflow RO-Crate", "1.0"),
}


class CrateError(SwiftError):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def result_files(results: Path) -> list[Path]:
    """Every result under ``results`` (logs, run records and the crate aside), sorted."""
    results = Path(results)
    return [
        p for p in sorted(results.rglob("*"))
        if p.is_file() and not p.relative_to(results).as_posix().startswith(NOT_RESULTS)
        and not p.name.startswith(".tmp-")
    ]  # fmt: skip


def _git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _run_records(results: Path) -> list[dict]:
    records = []
    for path in sorted((results / "logs").rglob("*.run.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            log.warning("%s: not a run record, left out of the crate", path)
    return records


def _stage_records(results: Path, stages: Iterable[str]) -> dict[str, dict]:
    """Each stage's merged record (read without unpickling), where it exists."""
    from swift_rules.results import ResultError, load_meta

    out = {}
    for stage in stages:
        path = results / stage.replace("::", "/") / "merged.pkl"
        try:
            out[stage] = load_meta(path)
        except ResultError:
            continue
    return out


def write_crate(results: str | Path, *, workflow_file: str | Path, config: Mapping,
                engine: tuple[str, str], registry=None) -> Path:  # fmt: skip
    """Write ``results/ro-crate-metadata.json`` (and ``results/run/config.json``)."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    from swift_rules import __version__
    from swift_rules.remote import is_remote
    from swift_rules.runner import software_versions
    from swift_rules.workflow import Plan

    results = Path(results)
    workdir = Path.cwd()
    plan = Plan(dict(config), registry=registry) if registry else Plan(dict(config))
    records = _run_records(results)
    crate = ROCrate(version="1.1")
    crate.metadata.extra_terms.update({t: TERMS_BASE + t for t in TERMS})
    # schema.org's, which RO-Crate 1.1's context does not name yet (1.3's does).
    crate.metadata.extra_terms["sha256"] = "http://schema.org/sha256"
    root = crate.root_dataset
    root["name"] = f"swift-rules run of {Path(workflow_file).as_posix()}"
    root["description"] = (
        "A Workflow Run Crate of a swift-rules workflow run: its workflow and config, the "
        "stages that ran, the inputs and every output with its checksum."
    )
    root["license"] = "https://spdx.org/licenses/BSD-3-Clause"
    root["conformsTo"] = [{"@id": uri} for uri in PROFILES]
    for uri, (name, version) in PROFILES.items():
        crate.add(ContextEntity(crate, uri, properties={
            "@type": "CreativeWork", "name": name, "version": version}))  # fmt: skip

    # The workflow, and the config it ran with (a copy in the crate).
    config_copy = results / CONFIG_COPY
    config_copy.parent.mkdir(parents=True, exist_ok=True)
    from swift_rules.atomic import write_text

    write_text(config_copy, json.dumps(plan.config, indent=1, sort_keys=True, default=str) + "\n")
    workflow_abs = (workdir / workflow_file).resolve()
    from swift_rules.atomic import write_bytes

    write_bytes(results / "run" / Path(workflow_file).name, workflow_abs.read_bytes())
    workflow = crate.add_workflow(
        str(workflow_abs), dest_path="run/" + Path(workflow_file).name, main=True, lang="snakemake",
        properties={"name": Path(workflow_file).as_posix(), "url": workflow_abs.as_uri()},
    )  # fmt: skip
    config_entity = crate.add_file(str(config_copy), dest_path=CONFIG_COPY, properties={
        "name": "the workflow's config, validated, with every default",
        "encodingFormat": "application/json", "sha256": sha256(config_copy)})  # fmt: skip

    # Software: swift-rules, the engine, the libraries.
    software = {"swift-rules": __version__, engine[0]: engine[1], **software_versions()}
    commit = _git_commit(workflow_abs.parent)
    tools = []
    for name, version in sorted(software.items()):
        props = {"@type": "SoftwareApplication", "name": name, "softwareVersion": version}
        if name == "swift-rules" and commit:
            props["identifier"] = f"git:{commit}"
        tools.append(crate.add(ContextEntity(crate, f"#software-{name}", properties=props)))

    # Inputs: every file of every dataset.
    inputs = [config_entity]
    for ds in plan.datasets.values():
        for f in ds.files:
            props = {"name": f.path, "dataset": ds.name}
            if f.entries is not None:
                props["numberOfEvents"] = f.entries
            if is_remote(f.path):
                inputs.append(crate.add_file(f.path, fetch_remote=False, properties=props))
                continue
            local = workdir / f.path
            if local.is_file():
                props.update(sha256=sha256(local), contentSize=local.stat().st_size)
            props["@type"] = "File"
            inputs.append(crate.add(ContextEntity(crate, f"#input:{f.path}", properties=props)))

    # Outputs: every result with its checksum.
    outputs = [
        crate.add_file(
            str(p),
            dest_path=p.relative_to(results).as_posix(),
            properties={"sha256": sha256(p), "contentSize": p.stat().st_size},
        )
        for p in result_files(results)
    ]

    # The stages that ran: registered variants, fingerprints, the variants that ran.
    stages = []
    for stage, record in _stage_records(results, plan.stages).items():
        entry = plan.registry.get(stage)
        props = {
            "@type": "SoftwareSourceCode", "name": stage,
            "registeredVariants": {d: v.target for d, v in sorted(entry.variants.items())},
            "codeFingerprint": record.get("code_fingerprint"),
            "variantRun": record.get("variant"),
            "events": record.get("events"), "sourceEvents": record.get("source_events"),
            "skippedFiles": record.get("skipped_files"),
        }  # fmt: skip
        props = {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                 for k, v in props.items() if v is not None}  # fmt: skip
        stages.append(crate.add(ContextEntity(crate, f"#stage-{stage}", properties=props)))

    # Where and when the jobs ran.
    hosts = sorted({r.get("host") for r in records if r.get("host")})
    executors = sorted({(r.get("executor") or {}).get("type", "local") for r in records})
    started = min((r["started"] for r in records if r.get("started")), default=None)
    finished = max((r["finished"] for r in records if r.get("finished")), default=None)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    action = crate.add_action(
        workflow, identifier="#run", object=inputs, result=outputs,
        properties={
            "name": f"Run of {Path(workflow_file).as_posix()}",
            "startTime": started or now, "endTime": finished or now,
            "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
            "instrument": {"@id": workflow.id},
            "executors": ", ".join(executors) or "local", "hosts": ", ".join(hosts),
            "engine": f"{engine[0]} {engine[1]}",
        },
    )  # fmt: skip
    action["softwareApplications"] = tools
    action["stages"] = stages
    root["mentions"] = [action]
    crate.metadata.write(results)
    return results / CRATE_FILE


def read_crate(results: str | Path) -> dict:
    path = Path(results) / CRATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CrateError(f"cannot read the run's crate {path}: {err}") from err


def recorded_checksums(crate: Mapping) -> dict[str, str]:
    """``path -> sha256`` of every output the crate lists."""
    graph = {e["@id"]: e for e in crate["@graph"]}
    run = graph.get("#run", {})
    results = run.get("result") or []
    results = results if isinstance(results, list) else [results]
    # ro-crate-py writes a file's path as a URI reference: "W+jets" as "W%2Bjets".
    return {
        unquote(r["@id"]): graph[r["@id"]]["sha256"] for r in results if "sha256" in graph[r["@id"]]
    }


def compare(recorded: dict[str, str], results: Path) -> dict[str, list[str]]:
    """What of ``results`` differs from the recorded checksums."""
    present = {p.relative_to(results).as_posix(): p for p in result_files(results)}
    changed = [k for k in recorded if k in present and sha256(present[k]) != recorded[k]]
    return {
        "missing": sorted(set(recorded) - set(present)),
        "different": sorted(changed),
        "extra": sorted(set(present) - set(recorded)),
    }


def verify(results: str | Path) -> dict[str, list[str]]:
    """Compare a results folder with its crate: ``{"missing", "different", "extra"}``."""
    return compare(recorded_checksums(read_crate(results)), Path(results))

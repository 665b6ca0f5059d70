"""What the Snakemake rules ask of a workflow config: samples, file groups, targets.

Imported when Snakemake parses the rule files, so it must stay light: no coffea,
no uproot, no stage code (fingerprints are taken from source text).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from pathlib import Path

from swift_rules import device, fingerprint, remote
from swift_rules.config import validate_config
from swift_rules.registry import REGISTRY, RegistryError, load_registrations
from swift_rules.remote import is_remote

AGC_FILESET = Path(__file__).parent / "agc" / "data" / "nanoaod_inputs.json"
RULES_DIR = Path(__file__).parent / "rules"
# Stage settings that size a job but cannot change its output.
RESOURCE_KEYS = ("threads", "mem_mb", "gpu", "runtime")


def rules_path(name: str) -> str:
    """Path of a rule file shipped with swift-rules, for ``include:`` or ``module``."""
    path = RULES_DIR / name
    if not path.exists():
        known = sorted(p.name for p in RULES_DIR.glob("*.smk"))
        raise FileNotFoundError(f"no rule file {name!r} in swift-rules; known: {known}")
    return str(path)


def stage_dir(stage: str) -> str:
    """``agc::ttbar`` -> ``agc/ttbar`` (a directory per stage under results)."""
    return stage.replace("::", "/")


def read_fileset(path: str | Path) -> dict:
    """An AGC-layout fileset: {process: {variation: {files: [{path, nevts}], ...}}}."""
    path = AGC_FILESET if str(path) == "agc" else Path(path)
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read fileset {path}: {err}") from err
    samples = {}
    for process, variations in doc.items():
        for variation, entry in variations.items():
            try:
                files = [(f["path"], int(f["nevts"])) for f in entry["files"]]
            except (KeyError, TypeError) as err:
                raise ValueError(
                    f"fileset {path}: {process}/{variation} is not of the form "
                    f"{{files: [{{path, nevts}}]}} ({err!r} missing)"
                ) from None
            samples[f"{process}__{variation}"] = files
    return samples


class Plan:
    """The jobs of a workflow, derived from its (validated) config."""

    def __init__(self, config, registry=REGISTRY):
        # Jobs find a user's stage modules next to the workflow, as `python -m` would.
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        self.config = validate_config(config)
        self.registry = load_registrations(self.config, registry=registry)
        self.results = self.config["results"].rstrip("/")
        data = self.config["data"]
        self.stage_in_dir = (data["remote"]["stage_in"] or "").rstrip("/") or None
        # Local copy -> remote URL, for the stage-in rule (config data.remote.stage_in).
        self.staged_urls: dict[str, str] = {}
        self.files = self._samples(data)
        self.files_per_group = data["files_per_group"]

    # -- inputs ---------------------------------------------------------------

    def _samples(self, data) -> dict[str, list[tuple[str, int]]]:
        if data["source"] == "generated":
            files = self.generated_files()
            samples: dict[str, list[tuple[str, int]]] = {}
            for path, (sample, _index, n) in files.items():
                samples.setdefault(sample, []).append((path, n))
        else:
            if not data["fileset"]:
                raise ValueError("config data.source is 'fileset' but data.fileset is not set")
            samples = read_fileset(data["fileset"])
        if data["samples"]:
            unknown = sorted(set(data["samples"]) - set(samples))
            if unknown:
                raise ValueError(
                    f"config data.samples names unknown sample(s) {unknown}; "
                    f"known: {sorted(samples)}"
                )
            samples = {s: samples[s] for s in data["samples"]}
        limit = data["max_files_per_sample"]
        return {
            s: [(self._job_path(p, data["remote"]), n) for p, n in (f[:limit] if limit else f)]
            for s, f in sorted(samples.items())
        }

    def _job_path(self, path: str, settings) -> str:
        """The path jobs read: rewritten (``data.remote``), or its stage-in copy."""
        path = remote.rewrite(path, settings)
        if self.stage_in_dir and is_remote(path):
            local = remote.staged_path(path, self.stage_in_dir)
            self.staged_urls[local] = path
            return local
        return path

    def staged_url(self, local: str) -> str:
        """The remote URL of a stage-in copy (the rule swift_stage_in's params)."""
        try:
            return self.staged_urls[local]
        except KeyError:
            raise KeyError(f"{local} is not the stage-in copy of any file of the fileset") from None

    @functools.cached_property
    def generation(self) -> dict:
        gen = self.config["data"]["generated"]
        from swift_rules.agc.presets import DEFAULT_SIZES

        events, files = DEFAULT_SIZES[gen["preset"]]
        if gen["events_per_file"]:
            events = dict.fromkeys(events, gen["events_per_file"])
        if gen["files_per_sample"]:
            files = dict.fromkeys(files, gen["files_per_sample"])
        return {"events": events, "files": files, **gen}

    def generated_files(self) -> dict[str, tuple[str, int, int]]:
        """Path of every generated file -> (sample, file index, events)."""
        gen = self.generation
        out = {}
        for sample, n_files in gen["files"].items():
            for i in range(n_files):
                path = f"{gen['directory']}/{sample}/{sample}_{i:04d}.root"
                out[path] = (sample, i, gen["events"][sample])
        return out

    @property
    def samples(self) -> list[str]:
        return list(self.files)

    def groups(self, sample: str) -> list[list[str]]:
        paths = [p for p, _ in self.files[sample]]
        n = self.files_per_group
        return [paths[i : i + n] for i in range(0, len(paths), n)]

    def group_files(self, sample: str, group: int | str) -> list[str]:
        return self.groups(sample)[int(group)]

    def local_inputs(self, sample: str, group: int | str) -> list[str]:
        """Files Snakemake should track (remote URLs are read, not tracked)."""
        return [p for p in self.group_files(sample, group) if not is_remote(p)]

    # -- stages ---------------------------------------------------------------

    @property
    def stages(self) -> list[str]:
        return list(self.config["stages"])

    def stage_name(self, namespace: str, stagename: str) -> str:
        return f"{namespace}::{stagename}"

    def settings(self, stage: str) -> dict:
        if stage not in self.config["stages"]:
            raise KeyError(f"stage {stage!r} has no settings under 'stages:' in the config")
        return self.config["stages"][stage]

    @functools.lru_cache(maxsize=None)  # noqa: B019, UP033 - one Plan per parse; Python 3.8
    def code_fingerprint(self, stage: str) -> str:
        """Hash of the code of every variant this stage's jobs may run."""
        entry = self.registry.get(stage)
        devices = device.possible_devices(entry, self.settings(stage)["device"])
        for d in devices:
            variant = entry.variants[d]
            if fingerprint.find_module(variant.module) is None:
                raise RegistryError(
                    f"cannot find module {variant.module!r} of stage {stage!r} ({d} variant, "
                    f"registered in {variant.source}); is it installed, or on PYTHONPATH?"
                )
        return fingerprint.code_fingerprint(entry.variants[d].module for d in devices)

    def job_settings(self, stage: str) -> dict:
        """Settings that can change a stage's output (not its resources)."""
        return {k: v for k, v in self.settings(stage).items() if k not in RESOURCE_KEYS}

    def run_args(self, stage: str, sample: str, group: int | str) -> str:
        """Arguments of one ``swift-rules run`` job that decide its output, shell-quoted.

        They go into the rule's params, so changing any of them reruns the job: the
        stage's own settings and registration (not other stages'), whether bad files
        are skipped, and the files. How the job executes stays out (``executor_json``).
        """
        variants = {d: v.target for d, v in sorted(self.registry.get(stage).variants.items())}
        args = [
            "--sample", sample,
            "--settings", json.dumps(self.job_settings(stage), sort_keys=True),
            "--register", json.dumps({stage: variants}, sort_keys=True),
            *(["--skip-bad-files"] if self.config["executor"]["skip_bad_files"] else []),
            "--files", *self.group_files(sample, group),
        ]  # fmt: skip
        return shlex.join(args)

    def executor_json(self) -> str:
        """The executor settings for jobs (environment variable, not params)."""
        executor = {k: v for k, v in self.config["executor"].items() if k != "skip_bad_files"}
        return json.dumps(executor, sort_keys=True)

    # -- outputs --------------------------------------------------------------

    def partial(self, stage: str, sample: str, group: int) -> str:
        return f"{self.results}/{stage_dir(stage)}/partial/{sample}/group{group:04d}.pkl"

    def partials(self, stage: str, sample: str) -> list[str]:
        return [self.partial(stage, sample, g) for g in range(len(self.groups(sample)))]

    def sample_output(self, stage: str, sample: str) -> str:
        return f"{self.results}/{stage_dir(stage)}/samples/{sample}.pkl"

    def sample_outputs(self, stage: str) -> list[str]:
        return [self.sample_output(stage, s) for s in self.samples]

    def merged(self, stage: str) -> str:
        return f"{self.results}/{stage_dir(stage)}/merged.pkl"

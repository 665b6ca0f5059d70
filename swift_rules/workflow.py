"""What the Snakemake rules ask of a workflow config: datasets, file groups, jobs, targets.

The one module the rule files import: the plan (``Plan``), ``rules_path``, and what the
rules need besides (the executor plugins' resource names and work-arounds, the job
executor settings' variable, the warm-start offer). Imported when Snakemake parses the
rule files, so it must stay light: no coffea, no uproot, no dask, no stage code
(fingerprints are taken from source text), and Python 3.8 (REANA's engine).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from pathlib import Path

from swift_rules import device, fingerprint, remote
from swift_rules.config import ConfigError, validate_config
from swift_rules.datasets import Dataset, InputFile, dataset_key, read_fileset
from swift_rules.executors import (
    EXECUTOR_ENV,
    batch_resources,
    guard_htcondor_executor_startup,
    guard_slurm_executor,
)  # fmt: skip
from swift_rules.options import check_options
from swift_rules.registry import REGISTRY, RegistryError, load_registrations
from swift_rules.remote import is_remote
from swift_rules.warmstart import offer as offer_warm_start

__all__ = [
    "EXECUTOR_ENV", "Plan", "batch_resources", "guard_htcondor_executor_startup",
    "guard_slurm_executor", "offer_warm_start", "rules_path", "stage_dir",
]  # fmt: skip

RULES_DIR = Path(__file__).parent / "rules"
# Stage settings that size a job but cannot change its output.
RESOURCE_KEYS = ("threads", "mem_mb", "gpu", "runtime")
# Stage settings that shape the workflow, not a job's output.
PLAN_KEYS = ("input", "files_per_group", "export")
SKIM_SUFFIX = ".parquet"


def rules_path(name: str) -> str:
    """Path of a rule file shipped with swift-rules, for ``include:`` or ``module``."""
    path = RULES_DIR / name
    if not path.exists():
        known = sorted(p.name for p in RULES_DIR.glob("*.smk"))
        raise FileNotFoundError(f"no rule file {name!r} in swift-rules; known: {known}")
    return str(path)


def stage_dir(stage: str) -> str:
    """``mine::dimuon`` -> ``mine/dimuon`` (a directory per stage under results)."""
    return stage.replace("::", "/")


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
        # Generated file -> (dataset key, file index, events), for the generation rule.
        self.generated: dict[str, tuple[str, int, int]] = {}
        self.datasets: dict[str, Dataset] = self._datasets(data)
        self.files_per_group = data["files_per_group"]
        self.extra_targets: list[str] = []
        self._check_stages()

    # -- inputs ---------------------------------------------------------------

    def _datasets(self, data) -> dict[str, Dataset]:
        """The datasets to process, keyed by :func:`dataset_key`, in key order."""
        if data["source"] == "generated":
            datasets = self._generated_datasets(data["generated"])
        else:
            if not data["fileset"]:
                raise ConfigError("config data.source is 'fileset' but data.fileset is not set")
            path = self.registry.fileset(data["fileset"]) or Path(data["fileset"])
            datasets = read_fileset(path)
        if data["samples"]:
            unknown = sorted(set(data["samples"]) - set(datasets))
            if unknown:
                raise ConfigError(
                    f"config data.samples names unknown dataset(s) {unknown}; "
                    f"known: {sorted(datasets)}"
                )
            datasets = {s: datasets[s] for s in data["samples"]}
            # Only the kept datasets' files are generated (and listed in the fileset).
            kept = {d.key for d in datasets.values()}
            self.generated = {p: g for p, g in self.generated.items() if g[0] in kept}
        limit = data["max_files_per_sample"]
        out = {}
        for ds in sorted(datasets.values(), key=lambda d: d.key):
            files = [
                InputFile(self._job_path(f.path, data["remote"]), f.tree, f.entries)
                for f in (ds.files[:limit] if limit else ds.files)
            ]
            trees = sorted({f.tree for f in files})
            if len(trees) > 1:
                raise ConfigError(f"dataset {ds.name!r} mixes tree names {trees}: use one")
            out[ds.key] = Dataset(ds.name, files, dict(ds.metadata))
        return out

    @functools.cached_property
    def generator(self):
        """The registered generator of config data.generated (loaded: its module is light)."""
        name = self.config["data"]["generated"]["generator"]
        if not name:
            known = ", ".join(self.registry.generator_names()) or "none"
            raise ConfigError(
                "config data.source is 'generated' but data.generated.generator is not set; "
                f"registered generators: {known}"
            )
        entry = self.registry.generator(name)
        return entry, entry.load()()

    def _generated_datasets(self, gen) -> dict[str, Dataset]:
        entry, generator = self.generator
        presets = getattr(generator, "presets", {})
        if gen["preset"] not in presets:
            raise ConfigError(
                f"config data.generated.preset: {gen['preset']!r} is not a preset of generator "
                f"{gen['generator']!r}; its presets: {', '.join(presets)}"
            )
        datasets = {}
        for name, spec in generator.datasets(gen["preset"]).items():
            n_files = gen["files_per_sample"] or spec["files"]
            events = gen["events_per_file"] or spec["events"]
            key = dataset_key(name)
            files = []
            for i in range(n_files):
                path = self.generated_path(key, i)
                self.generated[path] = (key, i, events)
                files.append(InputFile(path, "Events", events))
            datasets[name] = Dataset(name, files, dict(spec.get("metadata") or {}))
        return datasets

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

    def generated_path(self, key: str, index: int | str) -> str:
        directory = self.config["data"]["generated"]["directory"]
        return f"{directory}/{key}/{key}_{int(index):04d}.root"

    def generator_fingerprint(self) -> str:
        """Hash of the generator's code: an edit of it writes the files anew."""
        entry, _ = self.generator
        return fingerprint.code_fingerprint([entry.module])

    def generation_args(self, path: str) -> str:
        """Arguments of the ``swift-rules generate`` job that writes generated ``path``."""
        gen = self.config["data"]["generated"]
        key, index, events = self.generated[path]
        entry, _ = self.generator
        args = [
            entry.target, "--dataset", self.datasets[key].name, "--index", str(index),
            "--events", str(events), "--seed", str(gen["seed"]),
            "--compression", gen["compression"],
        ]  # fmt: skip
        return shlex.join(args)

    def generated_fileset(self) -> str | None:
        """The coffea fileset the generation writes, or None for data.source fileset."""
        if not self.generated:
            return None
        return self.config["data"]["generated"]["directory"].rstrip("/") + "/fileset.json"

    def generated_metadata_json(self) -> str:
        """Metadata of the generated datasets, keyed by their folder names (JSON)."""
        return json.dumps(
            {k: ds.metadata for k, ds in self.datasets.items()}, sort_keys=True, default=str
        )

    @property
    def samples(self) -> list[str]:
        """The dataset keys (their names in file paths), sorted."""
        return list(self.datasets)

    def metadata(self, key: str) -> dict:
        """What a stage sees of dataset ``key`` in ``events.metadata`` (with coffea's own
        keys): its fileset metadata and ``nevents``, the events of its files here."""
        ds = self.datasets[key]
        meta = dict(ds.metadata)
        if ds.entries is not None:
            meta["nevents"] = ds.entries
        return meta

    # -- stages ---------------------------------------------------------------

    def _check_stages(self) -> None:
        for stage, settings in self.config["stages"].items():
            # Options are checked against the stage's source now, not in the first job.
            entry = self.registry.get(stage)
            for d in device.possible_devices(entry, settings["device"]):
                check_options(stage, entry.variants[d].target, settings["options"])
            seen = [stage]
            up = settings["input"]
            while up is not None:
                if up in seen:
                    raise ConfigError(f"stages: input chain {' -> '.join([*seen, up])} is a cycle")
                if up not in self.config["stages"]:
                    raise ConfigError(
                        f"stages.{seen[-1]}.input: stage {up!r} is not under 'stages:' "
                        "(a stage's input must run in this workflow)"
                    )
                if not self.config["stages"][up]["skim"]:
                    raise ConfigError(
                        f"stages.{seen[-1]}.input: stage {up!r} writes no skims; "
                        f"set stages.{up}.skim: true"
                    )
                seen.append(up)
                up = self.config["stages"][up]["input"]

    @property
    def stages(self) -> list[str]:
        return list(self.config["stages"])

    def stage_name(self, namespace: str, stagename: str) -> str:
        return f"{namespace}::{stagename}"

    def stage_of_dir(self, path: str) -> str:
        """``mine/dimuon`` -> ``mine::dimuon`` (a rule wildcard back to the stage name)."""
        return path.replace("/", "::", 1)

    def settings(self, stage: str) -> dict:
        if stage not in self.config["stages"]:
            raise KeyError(f"stage {stage!r} has no settings under 'stages:' in the config")
        return self.config["stages"][stage]

    def is_skim(self, stage: str) -> bool:
        return bool(self.settings(stage)["skim"])

    def skim_stages(self) -> list[str]:
        return [s for s in self.stages if self.is_skim(s)]

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
        skip = RESOURCE_KEYS + PLAN_KEYS
        return {k: v for k, v in self.settings(stage).items() if k not in skip}

    def _group_size(self, stage: str | None) -> int:
        size = self.settings(stage)["files_per_group"] if stage else None
        return size or self.files_per_group

    def input_files(self, key: str, stage: str | None = None) -> list[str]:
        """What ``stage`` reads of dataset ``key``: its files, or its input stage's skims."""
        up = self.settings(stage)["input"] if stage else None
        if up is None:
            return [f.path for f in self.datasets[key].files]
        return [self.skim(up, key, g) for g in range(len(self.groups(key, up)))]

    def groups(self, key: str, stage: str | None = None) -> list[list[str]]:
        paths = self.input_files(key, stage)
        n = self._group_size(stage)
        return [paths[i : i + n] for i in range(0, len(paths), n)]

    def group_files(self, key: str, group: int | str, stage: str | None = None) -> list[str]:
        return self.groups(key, stage)[int(group)]

    def local_inputs(self, key: str, group: int | str, stage: str | None = None) -> list[str]:
        """Files Snakemake should track (remote URLs are read, not tracked)."""
        return [p for p in self.group_files(key, group, stage) if not is_remote(p)]

    def run_args(self, stage: str, key: str, group: int | str) -> str:
        """Arguments of one ``swift-rules run`` job that decide its output, shell-quoted.

        They go into the rule's params, so changing any of them reruns the job: the
        stage's own settings and registration (not other stages'), the dataset and its
        metadata, whether bad files are skipped, and the files (last, after ``--``: a
        file name is never read as an option). How the job executes stays out
        (``executor_json``).
        """
        variants = {d: v.target for d, v in sorted(self.registry.get(stage).variants.items())}
        ds = self.datasets[key]
        files = self.group_files(key, group, stage)
        tree = ds.files[0].tree if ds.files and not self.settings(stage)["input"] else None
        sum_weights = self.config["outputs"]["normalise_by"] == "sum_weights" and not ds.is_data
        args = [
            "--sample", ds.name,
            "--metadata", json.dumps(self.metadata(key), sort_keys=True, default=str),
            "--settings", json.dumps(self.job_settings(stage), sort_keys=True),
            "--register", json.dumps({stage: variants}, sort_keys=True),
            *(["--tree", tree] if tree and tree != "Events" else []),
            *(["--skip-bad-files"] if self.config["executor"]["skip_bad_files"] else []),
            *(["--sum-weights"] if sum_weights else []),
            "--", *files,
        ]  # fmt: skip
        return shlex.join(args)

    def executor_json(self) -> str:
        """The executor settings for jobs (environment variable, not params)."""
        executor = {k: v for k, v in self.config["executor"].items() if k != "skip_bad_files"}
        return json.dumps(executor, sort_keys=True)

    # -- outputs --------------------------------------------------------------

    def _stage_results(self, stage: str) -> str:
        return f"{self.results}/{stage_dir(stage)}"

    def partial(self, stage: str, key: str, group: int) -> str:
        """The result file of one job (for a skim stage, the record beside its skim)."""
        folder = "skims" if self.is_skim(stage) else "partial"
        return f"{self._stage_results(stage)}/{folder}/{key}/group{group:04d}.pkl"

    def skim(self, stage: str, key: str, group: int) -> str:
        """The Parquet skim of one job of a skim stage."""
        return f"{self._stage_results(stage)}/skims/{key}/group{group:04d}{SKIM_SUFFIX}"

    def partials(self, stage: str, key: str) -> list[str]:
        return [self.partial(stage, key, g) for g in range(len(self.groups(key, stage)))]

    def skims(self, stage: str, key: str | None = None) -> list[str]:
        keys = [key] if key else self.samples
        return [self.skim(stage, k, g) for k in keys for g in range(len(self.groups(k, stage)))]

    def sample_output(self, stage: str, key: str) -> str:
        return f"{self._stage_results(stage)}/samples/{key}.pkl"

    def sample_outputs(self, stage: str) -> list[str]:
        return [self.sample_output(stage, s) for s in self.samples]

    def merged(self, stage: str) -> str:
        return f"{self._stage_results(stage)}/merged.pkl"

    def exported_stages(self) -> list[str]:
        return [s for s in self.stages if self.settings(s)["export"]]

    def histograms_root(self, stage: str) -> str:
        """The stage's normalised histograms (``swift-rules export``)."""
        return f"{self._stage_results(stage)}/histograms.root"

    def plots_dir(self, stage: str) -> str:
        return f"{self._stage_results(stage)}/plots"

    def export_args(self, stage: str) -> str:
        """Arguments of the export job: the datasets' metadata and the normalisation."""
        outputs = self.config["outputs"]
        datasets = {
            self.sample_output(stage, k): {"name": ds.name, **ds.metadata}
            for k, ds in self.datasets.items()
        }
        if outputs["luminosity"] is not None:
            missing = [ds.name for ds in self.datasets.values()
                       if not ds.is_data and "xsec" not in ds.metadata]  # fmt: skip
            if missing:
                raise ConfigError(
                    f"outputs.luminosity is set, but simulated dataset(s) {', '.join(missing)} "
                    "have no xsec in their metadata (set is_data: true for collision data)"
                )
        args = [
            "--stage", stage,
            "--datasets", json.dumps(datasets, sort_keys=True, default=str),
            "--normalise-by", outputs["normalise_by"],
            *(["--luminosity", repr(outputs["luminosity"])] if outputs["luminosity"] else []),
        ]  # fmt: skip
        return shlex.join(args)

    def draw_args(self) -> str:
        plots = self.config["outputs"]["plots"]
        args = ["--formats", ",".join(plots["formats"])]
        for pattern in plots["include"]:
            args += ["--include", pattern]
        for pattern in plots["exclude"]:
            args += ["--exclude", pattern]
        if plots["log_y"]:
            args.append("--log-y")
        return shlex.join(args)

    def crate(self) -> str | None:
        """The run's Workflow Run RO-Crate (config outputs.crate), or None."""
        return f"{self.results}/ro-crate-metadata.json" if self.config["outputs"]["crate"] else None

    def add_targets(self, targets) -> None:
        """Outputs of an analysis' own rules, for the crate to record."""
        self.extra_targets.extend(t for t in targets if t not in self.extra_targets)

    def crate_inputs(self) -> list[str]:
        """What the crate records: every other target of the workflow."""
        return [t for t in self.targets() if t != self.crate()] + self.extra_targets

    def recorded_config(self) -> dict:
        """The config as the crate records it: what decides the outputs. Where and how the
        jobs ran (the executor, REANA's resources, each stage's resources) is left out:
        the jobs' run records say it, and changing it reruns nothing, the crate included."""
        out = {k: v for k, v in self.config.items() if k not in ("executor", "reana")}
        out["stages"] = {
            name: {k: v for k, v in settings.items() if k not in RESOURCE_KEYS}
            for name, settings in (self.config.get("stages") or {}).items()
        }
        return out

    def crate_args(self, snakefile: str, engine: str) -> str:
        return shlex.join([
            "--results", self.results, "--workflow", os.path.relpath(snakefile),
            "--engine", engine, "--config",
            json.dumps(self.recorded_config(), sort_keys=True, separators=(",", ":"),
                       default=str),
        ])  # fmt: skip

    def targets(self) -> list[str]:
        """Every generic output: each stage's merged result, and for exported stages their
        histograms.root and plots; the generated fileset; the run's crate."""
        out = [self.crate()] if self.crate() else []
        for stage in self.stages:
            out.append(self.merged(stage))
            if stage in self.exported_stages():
                out.append(self.histograms_root(stage))
                if self.config["outputs"]["plots"]["enabled"]:
                    out.append(self.plots_dir(stage))
        if self.generated_fileset():
            out.append(self.generated_fileset())
        return out

"""swift-rules: reusable Snakemake rules around Dask-parallel coffea stages.

The public API, for a workflow, a notebook or a script (everything else is internal):

- ``register_stage``: register a coffea processor as a stage's CPU or GPU variant;
- ``rules_path``: the path of a shipped rule file, for ``include:`` or ``module``;
- ``Plan``: the jobs and outputs of a workflow config (what the rule files use);
- ``run_stage``: run a registered stage over files, writing its result;
- ``load_result``, ``load_meta``: a result's output and record, or only its record;
- ``read_fileset``, ``write_fileset``, ``datasets_from_paths``: datasets in coffea's
  fileset format;
- ``generate_datasets``: the files of a registered data generator's preset;
- ``read_export``: the normalised histograms of a stage (its histograms.root).
"""

__version__ = "0.1.0"
__all__ = [
    "Plan",
    "__version__",
    "datasets_from_paths",
    "generate_datasets",
    "load_meta",
    "load_result",
    "read_export",
    "read_fileset",
    "register_stage",
    "rules_path",
    "run_stage",
    "write_fileset",
]

# Where each name lives. Imported on first use: every job's `swift-rules` client imports
# this package, and the registry (YAML, entry points) would add 25 ms to each one.
_HOMES = {
    "Plan": "swift_rules.workflow",
    "datasets_from_paths": "swift_rules.datasets",
    "generate_datasets": "swift_rules.generation",
    "load_meta": "swift_rules.results",
    "load_result": "swift_rules.results",
    "read_export": "swift_rules.export",
    "read_fileset": "swift_rules.datasets",
    "register_stage": "swift_rules.registry",
    "rules_path": "swift_rules.workflow",
    "run_stage": "swift_rules.runner",
    "write_fileset": "swift_rules.datasets",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'swift_rules' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

"""One generated file of each dataset (the toy generator's tiny preset), its skim as the
workflow's jobs write it, and a way to run a stage on either."""

from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from {{ cookiecutter.package_name }}.generator import ToyGenerator

PROJECT = Path(__file__).resolve().parents[1]
SKIM = "{{ cookiecutter.namespace }}::skim"
Input = namedtuple("Input", "path events metadata")


@pytest.fixture(scope="session")
def project() -> Path:
    """The project's folder (registry.yaml, config/, results/)."""
    return PROJECT


@pytest.fixture(scope="session")
def config() -> dict:
    return yaml.safe_load((PROJECT / "config/config.yaml").read_text())


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> dict[str, Input]:
    """{dataset: Input(path, events, metadata)}: file 0 of each dataset of preset tiny."""
    folder = tmp_path_factory.mktemp("generated")
    generator = ToyGenerator()
    out = {}
    for name, spec in generator.datasets("tiny").items():
        path = folder / name / f"{name}_0000.root"
        n = generator.write(path, name, 0, spec["events"], seed=1, compression="zlib")
        out[name] = Input(path, n, spec["metadata"])
    return out


def run(stage, dataset: str, path: Path, metadata: dict, file_format: str = "root"):
    """The output of processor `stage` on one file, read as swift-rules' jobs read it."""
    NanoAODSchema.warn_missing_crossrefs = False
    runner = processor.Runner(
        processor.IterativeExecutor(), schema=NanoAODSchema, format=file_format
    )
    fileset = {dataset: {"files": {str(path): "Events"}, "metadata": dict(metadata)}}
    return runner(fileset, stage, treename="Events")


@pytest.fixture(scope="session")
def run_on_file(generated):
    """run_on_file(processor, dataset) -> its output on the dataset's generated file."""

    def run_on(stage, dataset):
        return run(stage, dataset, generated[dataset].path, generated[dataset].metadata)

    return run_on


@pytest.fixture(scope="session")
def skims(generated, config, tmp_path_factory) -> dict[str, Path]:
    """{dataset: its skim}: the Parquet file swift-rules writes for a job of the skim
    stage, with this project's registrations and the config's settings."""
    from swift_rules.registry import StageRegistry
    from swift_rules.runner import run_stage

    registry = StageRegistry(builtins=False)
    registry.register_yaml(PROJECT / "registry.yaml")
    folder = tmp_path_factory.mktemp("skims")
    out = {}
    for name, (path, _, metadata) in generated.items():
        record = folder / f"{name}.pkl"
        settings = config["stages"][SKIM]
        run_stage(SKIM, name, [str(path)], record, registry=registry, stage_config=settings,
                  sample_metadata=metadata, progress=False)  # fmt: skip
        out[name] = record.with_suffix(".parquet")
    return out


@pytest.fixture(scope="session")
def run_on_skim(generated, skims):
    """run_on_skim(processor, dataset) -> its output on the dataset's skim (NanoAOD schema,
    as config `schema: nanoaod`)."""

    def run_on(stage, dataset):
        return run(stage, dataset, skims[dataset], generated[dataset].metadata, "parquet")

    return run_on

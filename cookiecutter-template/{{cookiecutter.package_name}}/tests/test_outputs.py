"""Checks of the workflow's outputs, after `snakemake --profile profiles/local`: run with
`python -m pytest -m workflow` (CI does, after the workflow; plain `pytest` leaves them out)."""

import json

import pytest
from swift_rules.datasets import dataset_key
from swift_rules.export import read_export
from swift_rules.results import load_result

pytestmark = pytest.mark.workflow
STAGES = ("skim", "histograms")


@pytest.fixture(scope="module")
def results(project, config):
    folder = project / config["results"] / "{{ cookiecutter.namespace }}"
    if not (folder / "histograms/histograms.root").exists():
        pytest.fail(f"no outputs in {folder}: run `snakemake --profile profiles/local` first")
    return folder


@pytest.mark.parametrize("stage", STAGES)
def test_histograms_root_has_simulation_normalised_and_data_unscaled(results, config, stage):
    _, description = read_export(results / stage / "histograms.root")
    assert set(description["groups"]) == {"signal", "background", "data"}
    assert description["groups"]["data"]["is_data"]
    luminosity = config["outputs"]["luminosity"]
    assert description["luminosity"] == luminosity
    # Each simulated dataset scaled by xsec x luminosity / the events read from its files.
    for info in description["groups"].values():
        for name in info["datasets"]:
            _, record = load_result(results / stage / "samples" / f"{dataset_key(name)}.pkl")
            meta, events = record["datasets"][name], record["source_events"][name]
            expected = 1.0 if meta.get("is_data") else meta["xsec"] * luminosity / events
            assert description["scales"][name] == pytest.approx(expected), name


FIGURES = [("histograms", "mass"), ("histograms", "njets"), ("skim", "cutflow")]


@pytest.mark.parametrize(("stage", "figure"), FIGURES)
def test_a_figure_per_histogram(results, config, stage, figure):
    for fmt in config["outputs"]["plots"]["formats"]:
        path = results / stage / "plots" / f"{figure}.{fmt}"
        assert path.stat().st_size > 10_000, path


def test_the_simulation_describes_the_data(results):
    # The toy's data is the simulated mixture: data / simulation is 1 within statistics.
    own = json.loads((results / "yields.json").read_text())
    assert own["data"] > 100
    assert own["data_over_simulation"] == pytest.approx(1.0, abs=0.15)

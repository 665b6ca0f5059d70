"""The H->tautau reference workflow end to end (tiny preset): generated inputs in the
outreach format, the skim stage's Parquet skims, the histogram stage reading them, the
generic export and figures, the analysis' QCD estimate and plot.py's plots; and what
reruns after an edit of each stage."""

from __future__ import annotations

import pytest
import uproot
import yaml
from helpers import REPO, planned_jobs, snakemake

pytestmark = pytest.mark.slow

SNAKEFILE = REPO / "workflow" / "htautau" / "Snakefile"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("htautau")
    config = yaml.safe_load((REPO / "config" / "htautau.yaml").read_text())
    config["data"]["generated"]["preset"] = "tiny"
    config["outputs"]["plots"] = {"include": ["m_vis_os", "pt_1_os"], "formats": ["png"]}
    (path / "config").mkdir()
    (path / "config" / "htautau.yaml").write_text(yaml.safe_dump(config))
    snakemake(path, snakefile=SNAKEFILE)
    return path


def test_every_output_of_the_analysis(workdir):
    results = workdir / "results-htautau"
    skims = sorted(p.parent.name for p in (results / "htautau/skim/skims").rglob("*.parquet"))
    assert len(skims) == 9 and "Run2012B_TauPlusX" in skims
    for name in ("qcd.root", "plots/m_vis.png", "plots/m_vis.pdf",
                 "htautau/histograms/histograms.root", "htautau/histograms/plots/m_vis_os.png",
                 "htautau/skim/histograms.root"):  # fmt: skip
        assert (results / name).stat().st_size > 0, name
    with uproot.open(results / "qcd.root") as f:
        keys = {k.split(";")[0] for k in f.keys()}
    assert {"m_vis/QCD", "m_vis/ZTT", "m_vis/ZLL", "m_vis/data", "m_vis/ggH"} <= keys


def test_noop_rerun_does_nothing(workdir):
    assert planned_jobs(workdir, snakefile=SNAKEFILE) == {}


def test_a_cut_of_the_histogram_stage_reruns_it_from_the_skims(workdir):
    config_path = workdir / "config" / "htautau.yaml"
    original = config_path.read_text()
    config = yaml.safe_load(original)
    config["stages"]["htautau::histograms"]["options"] = {"mt_1_max": 40.0}
    config_path.write_text(yaml.safe_dump(config))
    try:
        jobs = planned_jobs(workdir, snakefile=SNAKEFILE)
    finally:
        config_path.write_text(original)
    assert "swift_skim" not in jobs and "swift_generate" not in jobs
    # Nine datasets, one job each over their skims; then the merges and the steps after.
    assert jobs["swift_process"] == 9
    assert {"htautau_qcd", "htautau_plots", "swift_export", "swift_draw"} <= set(jobs)

"""A user's own analysis on the generic layer: a coffea fileset with data and simulation,
a skim stage whose Parquet skims feed a histogram stage, the generic normalisation,
ROOT export and figures, and what reruns after which edit."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from helpers import planned_jobs, snakemake

pytestmark = pytest.mark.slow

STAGES = '''
import awkward as ak
import hist
from coffea import processor


class Skim(processor.ProcessorABC):
    """Events with two jets above min_pt: their HT, jets and identity."""

    def __init__(self, min_pt=30.0):
        self.min_pt = min_pt

    def process(self, events):
        jets = events.Jet[events.Jet.pt > self.min_pt]
        keep = ak.num(jets) >= 2
        sel, jets = events[keep], jets[keep]
        skim = ak.zip(
            {"run": sel.run, "luminosityBlock": sel.luminosityBlock, "event": sel.event,
             "ht": ak.sum(jets.pt, axis=1),
             "Jet": ak.zip({"pt": jets.pt, "eta": jets.eta, "phi": jets.phi,
                            "mass": jets.mass})},
            depth_limit=1,
        )
        cutflow = hist.Hist.new.StrCat(["all", "2 jets"], name="cut").Double()
        cutflow.fill(cut=["all"] * len(events) + ["2 jets"] * int(ak.sum(keep)))
        return {"skim": skim, "cutflow": cutflow}

    def postprocess(self, accumulator):
        return accumulator


class Histograms(processor.ProcessorABC):
    """HT and the leading jet's pT of the skimmed events (unweighted)."""

    def __init__(self, bins=20):
        self.bins = bins

    def process(self, events):
        ht = hist.Hist.new.Reg(self.bins, 0, 1000, name="ht", label="HT [GeV]").Weight()
        ht.fill(ht=ak.to_numpy(events.ht))
        lead = hist.Hist.new.Reg(20, 0, 500, name="pt", label="leading jet pT [GeV]").Weight()
        lead.fill(pt=ak.to_numpy(events.Jet.pt[:, 0]))
        return {"ht": ht, "lead_pt": lead}

    def postprocess(self, accumulator):
        return accumulator
'''

SNAKEFILE = """
from swift_rules.workflow import rules_path

configfile: "config/config.yaml"

include: rules_path("stages.smk")

rule all:
    input: SR.targets()
    default_target: True
"""

LUMINOSITY = 100.0
XSEC = {"ttbar": 800.0, "wjets": 3000.0}


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    from swift_rules.agc.generate import generate_file

    workdir = tmp_path_factory.mktemp("chain")
    inputs = workdir / "inputs"
    made = {
        "ttbar": [("ttbar", "nominal", 0, 1500), ("ttbar", "nominal", 1, 1500)],
        "wjets": [("wjets", "nominal", 0, 2000)],
        "Run2015D": [("ttbar", "nominal", 7, 400), ("wjets", "nominal", 7, 900)],
    }
    fileset = {}
    for name, specs in made.items():
        files = {}
        for process, variation, index, n in specs:
            path = inputs / name / f"{process}_{index}.root"
            generate_file(path, process, variation, n, file_index=index, seed=5)
            files[str(path.relative_to(workdir))] = "Events"
        meta = {"is_data": True, "process": "data"} if name == "Run2015D" else {
            "xsec": XSEC[name], "process": name}  # fmt: skip
        fileset[name] = {"files": files, "metadata": meta}
    (workdir / "fileset.json").write_text(json.dumps(fileset))
    (workdir / "my_stages.py").write_text(STAGES)
    (workdir / "Snakefile").write_text(SNAKEFILE)
    config = {
        "data": {"source": "fileset", "fileset": "fileset.json", "files_per_group": 1},
        "register": {
            "mine::skim": {"cpu": "my_stages:Skim"},
            "mine::histograms": {"cpu": "my_stages:Histograms"},
        },
        "stages": {
            "mine::skim": {"skim": True, "chunksize": 700},
            "mine::histograms": {"input": "mine::skim", "files_per_group": 2, "schema": "nanoaod"},
        },
        "outputs": {"luminosity": LUMINOSITY, "plots": {"formats": ["png"]}},
    }
    (workdir / "config").mkdir()
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir)
    return workdir


def test_every_level_is_an_output(analysis):
    results = analysis / "results"
    skims = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.parquet"))
    assert skims == [
        "mine/skim/skims/Run2015D/group0000.parquet",
        "mine/skim/skims/Run2015D/group0001.parquet",
        "mine/skim/skims/ttbar/group0000.parquet",
        "mine/skim/skims/ttbar/group0001.parquet",
        "mine/skim/skims/wjets/group0000.parquet",
    ]
    for name in ("ht.png", "lead_pt.png"):
        assert (results / "mine/histograms/plots" / name).stat().st_size > 0
    # The skim stage's own histograms (its cutflow) are exported too.
    with uproot.open(results / "mine/skim/histograms.root") as f:
        assert "cutflow/ttbar" in [k.split(";")[0] for k in f.keys()]


def test_skims_are_columnar_files_other_tools_read(analysis):
    import pyarrow.parquet as pq

    path = analysis / "results/mine/skim/skims/ttbar/group0000.parquet"
    table = pq.read_table(path)
    assert {"ht", "nJet", "Jet_pt", "event"} <= set(table.column_names)
    record = json.loads(pq.read_schema(path).metadata[b"swift_rules.record"])
    assert record["stage"] == "mine::skim" and record["source_events"] == {"ttbar": 1500}
    assert table.num_rows < 1500  # selected events only


def test_simulation_is_normalised_by_the_source_events_and_data_is_not(analysis):
    from swift_rules.export import read_export
    from swift_rules.results import load_result

    hists, description = read_export(analysis / "results/mine/histograms/histograms.root")
    assert description["groups"]["data"]["is_data"] is True
    # N is the events read by the skim (3000 for ttbar), not the skimmed rows.
    assert description["scales"] == {
        "Run2015D": 1.0, "ttbar": XSEC["ttbar"] * LUMINOSITY / 3000,
        "wjets": XSEC["wjets"] * LUMINOSITY / 2000,
    }  # fmt: skip
    raw, record = load_result(analysis / "results/mine/histograms/samples/ttbar.pkl")
    assert record["source_events"] == {"ttbar": 3000}
    expected = raw["ht"].values() * (XSEC["ttbar"] * LUMINOSITY / 3000)
    assert np.array_equal(hists["ht"]["ttbar"].values(), expected)
    assert (
        hists["ht"]["data"].values().sum()
        == load_result(analysis / "results/mine/histograms/samples/Run2015D.pkl")[0]["ht"]
        .values()
        .sum()
    )


def test_noop_rerun_does_nothing(analysis):
    assert planned_jobs(analysis) == {}


def test_editing_the_histogram_stage_reruns_only_it_from_the_skims(analysis):
    config_path = analysis / "config/config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["stages"]["mine::histograms"]["options"] = {"bins": 25}  # a binning change
    config_path.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(analysis)
    # Three datasets, one job each (files_per_group 2 over the skims).
    assert jobs == {"swift_process": 3, "swift_merge_sample": 3, "swift_merge": 1,
                    "swift_export": 1, "swift_draw": 1, "swift_crate": 1, "all": 1}  # fmt: skip
    snakemake(analysis)


def test_editing_the_skim_stage_reruns_both(analysis):
    stages = analysis / "my_stages.py"
    import pyarrow.parquet as pq

    before = {p: pq.read_table(p) for p in (analysis / "results").rglob("*.parquet")}
    stages.write_text(stages.read_text().replace('"""Events with two jets', '"""Events: 2 jets'))
    jobs = planned_jobs(analysis)
    assert jobs["swift_skim"] == 5 and jobs["swift_process"] == 3, jobs
    snakemake(analysis)
    # Same selection, so the same columns (the record in the file names the new code).
    for path, table in before.items():
        assert pq.read_table(path).equals(table), path


def test_skims_are_the_same_bytes_for_any_chunking_and_executor(analysis, tmp_path):
    from swift_rules.registry import StageRegistry
    from swift_rules.runner import run_stage

    files = [str(analysis / "inputs/ttbar/ttbar_0.root")]
    registry = StageRegistry(builtins=False)
    registry.register("mine::skim", cpu="my_stages:Skim", source="test")
    digests = set()
    for name, chunksize, executor, workers in (
        ("a", 100, {}, 1), ("b", 1500, {}, 1), ("c", 333, {"type": "local"}, 2),
    ):  # fmt: skip
        out = tmp_path / f"{name}.pkl"
        import sys

        sys.path.insert(0, str(analysis))
        run_stage("mine::skim", "ttbar", files, out, registry=registry, executor=executor,
                  workers=workers, stage_config={"skim": True, "chunksize": chunksize},
                  progress=False)  # fmt: skip
        digests.add(_digest(out.with_suffix(".parquet")))
    assert len(digests) == 1
    # The same columns as the workflow's job (whose record names other paths).
    import pyarrow.parquet as pq

    reference = pq.read_table(analysis / "results/mine/skim/skims/ttbar/group0000.parquet")
    assert pq.read_table(tmp_path / "a.parquet").equals(reference)


def test_a_skim_stage_without_a_skim_is_a_clear_error(analysis, tmp_path):
    from helpers import run_cli

    (tmp_path / "bad_stage.py").write_text(
        textwrap.dedent(
            """
            from coffea import processor

            class NoSkim(processor.ProcessorABC):
                def process(self, events):
                    return {"n": len(events)}

                def postprocess(self, a):
                    return a
            """
        )
    )
    proc = run_cli(
        "run", "x::s", "--register", '{"x::s": {"cpu": "bad_stage:NoSkim"}}', "--sample", "s",
        "--settings", '{"skim": true}', "--workers", "1", "--out", str(tmp_path / "o.pkl"),
        "--", str(analysis / "inputs/wjets/wjets_0.root"),
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "NoSkim has skim: true, but its output has no 'skim' key" in proc.stderr


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

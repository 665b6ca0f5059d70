"""The run's provenance: a Workflow Run RO-Crate, checked against the profile with
roc-validator; a results folder checked against its crate; a rerun from the crate."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import run_cli, snakemake, validate_crate, write_workdir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = write_workdir(tmp_path_factory.mktemp("crate"), fit=False, extra_stage=False,
                            events=600, files=1)  # fmt: skip
    snakemake(workdir)
    return workdir


def graph(workdir):
    crate = json.loads((workdir / "results/ro-crate-metadata.json").read_text())
    return {e["@id"]: e for e in crate["@graph"]}


def test_the_crate_is_a_valid_workflow_run_crate(run, tmp_path):
    assert validate_crate(run / "results", tmp_path / "a") == []
    # ... and the validator would say so if it were not: a crate without its run.
    broken = tmp_path / "broken"
    shutil.copytree(run / "results", broken)
    crate = json.loads((broken / "ro-crate-metadata.json").read_text())
    crate["@graph"] = [e for e in crate["@graph"] if e["@id"] != "#run"]
    for e in crate["@graph"]:
        e.pop("mentions", None)
    (broken / "ro-crate-metadata.json").write_text(json.dumps(crate))
    assert validate_crate(broken, tmp_path / "b") != []


def test_the_crate_records_workflow_stages_inputs_outputs_and_where_it_ran(run):
    g = graph(run)
    main = g[g["./"]["mainEntity"]["@id"]]
    assert "ComputationalWorkflow" in main["@type"] and main["name"].endswith("Snakefile")
    assert (run / "results" / main["@id"]).read_text() == (run / main["name"]).read_text()
    action = g["#run"]
    assert action["engine"].startswith("snakemake 9.") and action["hosts"]
    assert action["executors"] == "local" and action["startTime"] <= action["endTime"]
    stage = g["#stage-agc::ttbar"]
    assert json.loads(stage["variantRun"]) == ["cpu"] and stage["codeFingerprint"]
    assert "swift_rules.agc.ttbar:TtbarProcessor" in stage["registeredVariants"]
    inputs = [g[o["@id"]] for o in action["object"] if o["@id"].startswith("#input:")]
    assert len(inputs) == 9 and all(len(i["sha256"]) == 64 for i in inputs)
    assert {i["numberOfEvents"] for i in inputs} == {600}
    outputs = {o["@id"] for o in action["result"]}
    assert {"histograms.root", "provenance.json", "agc/ttbar/histograms.root"} <= outputs
    assert not any(o.startswith("logs/") for o in outputs)
    versions = {g[t["@id"]]["name"]: g[t["@id"]]["softwareVersion"]
                for t in action["softwareApplications"]}  # fmt: skip
    assert {"swift-rules", "snakemake", "coffea", "numpy"} <= set(versions)


def test_verify_says_what_differs(run, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(run / "results", copy)
    assert run_cli("verify", str(copy)).returncode == 0
    (copy / "provenance.json").write_text("{}\n")
    (copy / "agc/ttbar/histograms.root").unlink()
    proc = run_cli("verify", str(copy), check=False)
    assert proc.returncode == 1
    assert "different: provenance.json" in proc.stdout
    assert "missing: agc/ttbar/histograms.root" in proc.stdout


def test_rerun_from_the_crate_reproduces_every_output(run, tmp_path):
    proc = run_cli("rerun", str(run / "results"), "--directory", str(tmp_path / "again"),
                   "--cores", "2", cwd=run)  # fmt: skip
    assert "every recorded output reproduced" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "again/results/histograms.root").is_file()

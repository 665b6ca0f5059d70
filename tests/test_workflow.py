"""The reference workflow end to end, and Snakemake's outputs as the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from helpers import (
    REPO,
    planned_jobs,
    result_checksums,
    snakemake,
    snakemake_exe,
    write_workdir,
)

pytestmark = pytest.mark.slow


def histogram_values(path: Path) -> dict[str, np.ndarray]:
    with uproot.open(path) as f:
        return {k.split(";")[0]: f[k].values(flow=True) for k in f.keys()}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The reference workflow, fit included, in a clean folder; and the checksums of its
    results and generated inputs as they were then (later tests change the folder)."""
    workdir = write_workdir(tmp_path_factory.mktemp("agc"), fit=True, extra_stage=False)
    snakemake(workdir)
    return workdir, result_checksums(workdir)


def test_reference_workflow_end_to_end(full_run):
    workdir, _ = full_run
    results = workdir / "results"
    for name in ("histograms.root", "provenance.json", "fit/workspace.json",
                 "fit/fit_results.json", "plots/stack_4j2b.png", "plots/postfit_4j1b.pdf",
                 "plots/pulls.png", "hepdata/submission.yaml"):  # fmt: skip
        assert (results / name).stat().st_size > 0, name
    assert (workdir / "data/generated/fileset.json").exists()
    # The generic outputs of the stage beside the AGC's own.
    assert (results / "agc/ttbar/plots/hists_4j2b_nominal.png").stat().st_size > 0
    generic = uproot.open(results / "agc/ttbar/histograms.root")
    assert "hists_4j1b_nominal/ttbar" in [k.split(";")[0] for k in generic.keys()]
    keys = set(histogram_values(results / "histograms.root"))
    assert {"4j1b_ttbar", "4j2b_pseudodata", "4j1b_wjets_scale_var_up"} <= keys
    fit = yaml.safe_load((results / "fit/fit_results.json").read_text())
    assert "ttbar_norm" in str(fit)
    # Its jobs forked from the run's warm-start server (Snakemake's local executor: the
    # offer is kept once Snakemake has picked it).
    records = [json.loads(p.read_text()) for p in (results / "logs").rglob("*.run.json")]
    assert len(records) >= 9 and all(r["warm_started"] for r in records), records


def test_a_second_clean_run_on_another_executor_gives_the_same_bytes(full_run, tmp_path):
    """Reproducibility a reviewer can check from the files: every result and generated
    input the same bytes in a second clean run whose stage jobs run on a local Dask
    cluster of two workers (threads: worker processes would cost each of the 18 jobs
    seconds of imports), cold."""
    _, first = full_run
    second = write_workdir(tmp_path / "second", fit=True, extra_stage=False)
    config_path = second / "config/config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["stages"]["agc::ttbar"]["threads"] = 2
    config["executor"] = {"warm_start": False, "processes": False}
    config_path.write_text(yaml.safe_dump(config))
    snakemake(second)
    sums = result_checksums(second)
    assert len(first) > 50 and first.keys() == sums.keys(), sorted(set(first) ^ set(sums))
    assert any(k.startswith("data/generated/") for k in first)
    different = sorted(k for k in first if first[k] != sums[k])
    assert different == [], different
    # Where they differ is in the run records beside the logs.
    records = list((second / "results/logs").rglob("*.run.json"))
    assert records and '"workers": 2' in records[0].read_text()


def test_report_gathers_plots_and_fit(full_run):
    workdir, _ = full_run
    snakemake(workdir, "--report", "results/report.html")
    html = (workdir / "results/report.html").read_text(errors="replace")
    assert "fit_results.json" in html and "stack_4j2b.png" in html
    assert "hists_4j1b_nominal.png" in html


def test_noop_rerun_does_nothing(full_run):
    workdir, _ = full_run
    assert planned_jobs(workdir) == {}


def test_changing_one_input_reruns_only_its_group(full_run, tmp_path):
    from helpers import run_cli

    workdir, _ = full_run
    target = workdir / "data/generated/wjets__nominal/wjets__nominal_0001.root"
    # New content, as when a file of a dataset is replaced (Snakemake ignores a bare
    # touch of a small file whose checksum did not change).
    changed = tmp_path / "changed.root"
    run_cli("generate", "agc::nanoaod", "--dataset", "wjets__nominal", "--index", "1",
            "--events", "1000", "--seed", "99", "--out", str(changed))  # fmt: skip
    os.replace(changed, target)
    jobs = planned_jobs(workdir)
    assert jobs.get("swift_process") == 1, jobs
    assert jobs.get("swift_merge_sample") == 1 and jobs.get("swift_merge") == 1
    assert jobs.get("swift_generate") is None
    assert {"agc_histograms", "agc_fit", "agc_plots", "swift_export", "swift_draw"} <= set(jobs)


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory):
    workdir = write_workdir(tmp_path_factory.mktemp("toy"), fit=False, extra_stage=True, files=1)
    snakemake(workdir, "all", "toy")
    assert planned_jobs(workdir, "all", "toy") == {}
    return workdir


def test_editing_a_stage_reruns_exactly_its_jobs(two_stages):
    workdir = two_stages
    source = workdir / "toy_stage.py"
    source.write_text(source.read_text().replace('"""Counts jets', '"""Counts the jets'))
    jobs = planned_jobs(workdir, "all", "toy")
    # One file per sample: 9 toy jobs, 9 sample merges, one merge, its export and
    # figures; no ttbar job.
    assert jobs == {
        "swift_process": 9, "swift_merge_sample": 9, "swift_merge": 1, "swift_export": 1,
        "swift_draw": 1, "swift_crate": 1, "toy": 1, "all": 1,
    }  # fmt: skip
    snakemake(workdir, "all", "toy")


def test_editing_a_module_the_stage_imports_reruns_it(two_stages):
    workdir = two_stages
    (workdir / "toy_helpers.py").write_text("def threshold():\n    return 31.0\n")
    assert planned_jobs(workdir, "all", "toy").get("swift_process") == 9
    snakemake(workdir, "all", "toy")


def test_editing_unrelated_code_reruns_nothing(two_stages):
    workdir = two_stages
    (workdir / "toy_unrelated.py").write_text("VALUE = 2\n")
    assert planned_jobs(workdir, "all", "toy") == {}


def test_config_changes_rerun_what_they_affect(two_stages):
    workdir = two_stages
    cfg_path = workdir / "config/config.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["stages"]["toy::count"]["threads"] = 2  # resources only: no rerun
    cfg["executor"] = {"type": "local", "skip_bad_files": False}
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert planned_jobs(workdir, "all", "toy") == {}
    cfg["stages"]["toy::count"]["options"] = {"scale": 2.0}
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert planned_jobs(workdir, "all", "toy").get("swift_process") == 9
    cfg_path.write_text(original)


def test_invalid_config_names_key_and_value(tmp_path):
    workdir = write_workdir(tmp_path, fit=False, extra_stage=False)
    cfg_path = workdir / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data"]["files_per_group"] = 0
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "files_per_group" in text and "0" in text


def test_killed_run_resumes_to_identical_results(full_run, tmp_path):
    reference, _ = full_run
    workdir = write_workdir(tmp_path, fit=False, extra_stage=False)
    snakemake(workdir, "data/generated/fileset.json")  # inputs first, then the kill
    cmd = [
        snakemake_exe(), "--profile", str(REPO / "profiles" / "local"), "--snakefile",
        str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), "--cores", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    partial = workdir / "results/agc/ttbar/partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(partial.rglob("*.pkl"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workdir / "results/histograms.root").exists()
    # Whatever was written is complete: every result file that exists loads.
    from swift_rules.results import load_result

    for path in partial.rglob("*.pkl"):
        load_result(path)
    snakemake(workdir, "--unlock")
    snakemake(workdir)
    ours = histogram_values(workdir / "results/histograms.root")
    theirs = histogram_values(reference / "results/histograms.root")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert np.array_equal(ours[key], theirs[key]), key


def test_workflow_loads_without_swift_rules_on_sys_path_of_snakefile():
    # The rule files are found through the installed package, not a relative path.
    from swift_rules.workflow import rules_path

    assert Path(rules_path("stages.smk")).is_file()
    with pytest.raises(FileNotFoundError, match="stages.smk"):
        rules_path("nope.smk")
    assert sys.modules["swift_rules"].__file__


MODULE_SNAKEFILE = """
from swift_rules.workflow import Plan, rules_path

configfile: "config/config.yaml"

module swift:
    snakefile: rules_path("stages.smk")
    config: config

use rule * from swift

PLAN = Plan(config)

rule all:
    input: PLAN.merged("toy::count")
    default_target: True
"""


def test_rules_imported_with_snakemake_module(tmp_path):
    workdir = write_workdir(tmp_path, fit=False, extra_stage=True, events=300, files=1)
    cfg_path = workdir / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data"]["samples"] = ["ttbar__nominal", "wjets__nominal"]
    cfg["stages"] = {"toy::count": cfg["stages"]["toy::count"]}
    cfg_path.write_text(yaml.safe_dump(cfg))
    (workdir / "Snakefile").write_text(MODULE_SNAKEFILE)
    # Inputs come from the generator directly (the module workflow has no AGC rules).
    from helpers import run_cli

    for sample in cfg["data"]["samples"]:
        out = workdir / f"data/generated/{sample}/{sample}_0000.root"
        run_cli("generate", "agc::nanoaod", "--dataset", sample, "--events", "300", "--out",
                str(out))  # fmt: skip
    snakemake(workdir)
    from swift_rules.results import load_result

    output, meta = load_result(workdir / "results/toy/count/merged.pkl")
    assert set(output["jets"]) == {"ttbar__nominal", "wjets__nominal"}
    assert meta["events"] == {"ttbar__nominal": 300, "wjets__nominal": 300}


def test_a_local_run_says_nothing_about_htcondor(tmp_path):
    # Snakemake imports every executor plugin at start-up; the HTCondor bindings warn
    # about a missing CONDOR_CONFIG. A user without HTCondor must not see it.
    defaults = ("/etc/condor/condor_config", "/usr/local/etc/condor_config")
    if any(Path(p).is_file() for p in defaults):
        pytest.skip("this machine has an HTCondor configuration: the bindings do not warn")
    workdir = write_workdir(tmp_path, fit=False, extra_stage=False)
    env = {k: v for k, v in os.environ.items() if k != "CONDOR_CONFIG"}
    env["HOME"] = str(tmp_path)  # no ~/.condor
    proc = snakemake(workdir, "--dry-run", env=env)
    text = proc.stdout + proc.stderr
    assert "condor" not in text.lower().replace("htcondor_request", "").replace(
        "swift_rules/backends", ""
    ), text[-3000:]


def test_results_path_with_spaces_and_shell_metacharacters(tmp_path):
    # Every value that reaches a shell command is quoted: nothing runs, nothing breaks.
    workdir = write_workdir(tmp_path, fit=True, extra_stage=False)
    cfg_path = workdir / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    results = "my results $(touch pwned) `touch pwned2`; 'q'"
    cfg["results"] = results
    cfg["data"]["samples"] = None
    cfg_path.write_text(yaml.safe_dump(cfg))
    snakemake(workdir)
    assert not (workdir / "pwned").exists() and not (workdir / "pwned2").exists()
    out = workdir / results
    for name in ("histograms.root", "provenance.json", "fit/fit_results.json",
                 "plots/stack_4j1b.png", "hepdata/submission.yaml",
                 "agc/ttbar/histograms.root"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name


def test_a_new_generator_setting_regenerates_the_inputs(full_run):
    workdir, _ = full_run
    cfg_path = workdir / "config/config.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["data"]["generated"]["seed"] = 43
    cfg_path.write_text(yaml.safe_dump(cfg))
    try:
        jobs = planned_jobs(workdir)
    finally:
        cfg_path.write_text(original)
    # Two files of each of the nine datasets (files_per_sample 2), one job per file.
    assert jobs.get("swift_generate") == 18 and jobs.get("swift_process") == 18, jobs

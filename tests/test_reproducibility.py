"""Reproducibility a reviewer can check from the files: every result the same bytes in
two clean runs, also when the second runs its stage jobs on another executor."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import uproot
import yaml
from helpers import snakemake, write_workdir

# What under results/ is not a result: how and when the jobs ran, and the run's crate.
from swift_rules.crate import NOT_RESULTS


def checksums(results: Path) -> dict[str, str]:
    return {
        str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(results.rglob("*"))
        if p.is_file() and not str(p.relative_to(results)).startswith(NOT_RESULTS)
    }


def test_a_root_file_is_the_same_bytes_every_time(tmp_path):
    import hist

    from swift_rules.rootfile import recreate

    h = hist.Hist.new.Reg(10, 0, 1, name="x").Weight()
    h.fill(x=[0.1, 0.5, 0.5])
    for name in ("a", "b"):
        with recreate(tmp_path / name / "h.root") as f:
            f["dir/h"] = h
    a, b = ((tmp_path / n / "h.root").read_bytes() for n in ("a", "b"))
    assert a == b
    with uproot.open(tmp_path / "a" / "h.root") as f:
        assert f["dir/h"].values().tolist() == h.values().tolist()


def test_source_date_epoch_is_the_time_written(tmp_path, monkeypatch):
    from swift_rules.rootfile import recreate, source_date

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date().isoformat() == "2023-11-14T22:13:20"
    with recreate(tmp_path / "late.root") as f:
        f["s"] = "x"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    with recreate(tmp_path / "late.root.default") as f:
        f["s"] = "x"
    assert (tmp_path / "late.root").read_bytes() != (tmp_path / "late.root.default").read_bytes()


@pytest.mark.slow
def test_two_clean_runs_and_another_executor_give_the_same_bytes(tmp_path):
    first = write_workdir(tmp_path / "first", fit=True, extra_stage=False)
    second = write_workdir(tmp_path / "second", fit=True, extra_stage=False)
    # The second run: its stage jobs on a local Dask cluster of two workers (threads:
    # worker processes would cost each of the 18 jobs seconds of imports), cold.
    config_path = second / "config/config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["stages"]["agc::ttbar"]["threads"] = 2
    config["executor"] = {"warm_start": False, "processes": False}
    config_path.write_text(yaml.safe_dump(config))
    snakemake(first)
    snakemake(second)
    a, b = checksums(first / "results"), checksums(second / "results")
    assert len(a) > 50 and a.keys() == b.keys(), sorted(set(a) ^ set(b))
    different = sorted(k for k in a if a[k] != b[k])
    assert different == [], different
    # The generated inputs too.
    inputs = [p for p in (first / "data").rglob("*") if p.is_file()]
    assert inputs and all(
        p.read_bytes() == (second / p.relative_to(first)).read_bytes() for p in inputs
    )
    # Where they differ is in the run records beside the logs.
    records = list((second / "results/logs").rglob("*.run.json"))
    assert records and '"workers": 2' in records[0].read_text()
    assert os.path.exists(first / "results/provenance.json")

"""The stage runner: executors, chunking, bad input, result records."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import nanoaod_file, run_cli

from swift_rules.agc.normalise import EmptySampleError, normalised_histogram
from swift_rules.results import load_result
from swift_rules.runner import InputError, run_stage

SAMPLE = "ttbar__nominal"


def hists_of(output):
    return output["hists"][SAMPLE]


def assert_same_histograms(a, b, rel=0.0):
    """Counts (unit weights) exactly equal; weighted sums equal to ``rel``."""
    assert list(a.axes["variation"]) == list(b.axes["variation"])
    assert list(a.axes["region"]) == list(b.axes["region"])
    va, vb = a.view(flow=True), b.view(flow=True)
    nominal = a.axes["variation"].index("nominal")
    assert np.array_equal(va.value[..., nominal], vb.value[..., nominal])
    if rel == 0.0:
        assert np.array_equal(va.value, vb.value) and np.array_equal(va.variance, vb.variance)
    else:
        np.testing.assert_allclose(va.value, vb.value, rtol=rel, atol=0)
        np.testing.assert_allclose(va.variance, vb.variance, rtol=rel, atol=0)


def run(tmp_path, files, name, sample=SAMPLE, settings=None, executor=None, workers=1):
    out = tmp_path / f"{name}.pkl"
    output, meta = run_stage(
        "agc::ttbar",
        sample,
        files,
        out,
        stage_config=settings or {},
        executor=executor or {},
        workers=workers,
        progress=False,
    )
    assert load_result(out)[1] == meta
    return output, meta


def test_same_results_for_any_chunking_and_executor(tmp_path, tiny_dataset):
    files = tiny_dataset[SAMPLE]
    ref, meta = run(tmp_path, files, "ref", settings={"chunksize": 100_000})
    assert meta["events"] == {SAMPLE: 8000}
    assert meta["variant"] == "cpu" and meta["stage"] == "agc::ttbar"
    small, _ = run(tmp_path, files, "small", settings={"chunksize": 777})
    dask, dmeta = run(
        tmp_path,
        files,
        "dask",
        settings={"chunksize": 1500},
        executor={"type": "local"},
        workers=2,
    )
    assert dmeta["workers"] == 2
    assert_same_histograms(hists_of(ref), hists_of(small), rel=1e-12)
    assert_same_histograms(hists_of(ref), hists_of(dask), rel=1e-12)


def test_two_runs_with_the_same_settings_are_bit_identical(tmp_path, tiny_dataset):
    files = tiny_dataset[SAMPLE]
    a, _ = run(tmp_path, files, "a", settings={"chunksize": 1000})
    b, _ = run(tmp_path, files, "b", settings={"chunksize": 1000})
    assert_same_histograms(hists_of(a), hists_of(b), rel=0.0)
    dask = {"type": "local"}
    c, _ = run(tmp_path, files, "c", settings={"chunksize": 1000}, executor=dask, workers=2)
    d, _ = run(tmp_path, files, "d", settings={"chunksize": 1000}, executor=dask, workers=2)
    assert_same_histograms(hists_of(c), hists_of(d), rel=0.0)


def test_existing_scheduler_address(tmp_path, tiny_dataset):
    from distributed import LocalCluster

    files = tiny_dataset[SAMPLE]
    ref, _ = run(tmp_path, files, "ref", settings={"chunksize": 1000})
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        executor = {"type": "address", "address": cluster.scheduler_address}
        out, meta = run(tmp_path, files, "addr", settings={"chunksize": 1000}, executor=executor)
    assert meta["executor"]["address"] == cluster.scheduler_address
    # A Dask tree reduction adds chunks in another order than the in-process loop.
    assert_same_histograms(hists_of(ref), hists_of(out), rel=1e-12)


def test_unreachable_scheduler_is_a_clear_error(tmp_path, tiny_dataset):
    from swift_rules.clusters import ClusterError

    executor = {"type": "address", "address": "tcp://127.0.0.1:9", "connect_timeout": 2}
    with pytest.raises(ClusterError, match=r"tcp://127\.0\.0\.1:9"):
        run(tmp_path, tiny_dataset[SAMPLE], "x", executor=executor)
    assert not (tmp_path / "x.pkl").exists()


def test_record_of_the_run(tmp_path, tiny_dataset):
    _, meta = run(tmp_path, tiny_dataset[SAMPLE], "rec")
    for key in (
        "code_fingerprint",
        "config",
        "files",
        "entries",
        "software",
        "wall_time_s",
        "events_per_s",
        "device_reason",
        "variant_target",
    ):
        assert key in meta, key
    assert meta["software"]["coffea"]
    assert sorted(meta["entries"]) == sorted(tiny_dataset[SAMPLE])


def test_missing_branch_names_file_and_branch(tmp_path, tiny_dataset):
    path = tiny_dataset[SAMPLE][0]
    settings = {"options": {"btag_branch": "btagNoSuchTagger"}}
    with pytest.raises(InputError) as err:
        run(tmp_path, [path], "m", settings=settings)
    assert path in str(err.value) and "Jet_btagNoSuchTagger" in str(err.value)
    assert not (tmp_path / "m.pkl").exists()


def test_real_nanoaod_v12_without_btagcsvv2(tmp_path):
    path = str(nanoaod_file("nano_tt_v12.root"))
    with pytest.raises(InputError, match="Jet_btagCSVV2"):
        run(tmp_path, [path], "v12")
    settings = {"options": {"btag_branch": "btagDeepFlavB", "btag_threshold": 0.3}}
    out, meta = run(tmp_path, [path], "v12", settings=settings)
    assert meta["events"] == {SAMPLE: 200}
    h = hists_of(out)
    assert h[:, "4j2b", "ttbar", "nominal"].values().sum() > 0


def test_real_nanoaod_dy_file(tmp_path):
    path = str(nanoaod_file("nano_dy.root"))
    out, meta = run(tmp_path, [path], "dy", sample="wjets__nominal")
    assert meta["events"] == {"wjets__nominal": 40}


def truncated_copy(src, dst, fraction=0.5):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[: int(len(data) * fraction)])
    return str(dst)


def test_truncated_file_is_named_or_skipped(tmp_path, tiny_dataset):
    good, other = tiny_dataset[SAMPLE]
    bad = truncated_copy(other, tmp_path / "truncated.root")
    with pytest.raises(InputError) as err:
        run(tmp_path, [good, bad], "t")
    assert bad in str(err.value) and "skip_bad_files" in str(err.value)

    out, meta = run(tmp_path, [good, bad], "t", executor={"skip_bad_files": True})
    assert meta["skipped_files"] == [bad]
    assert meta["events"] == {SAMPLE: 4000}  # the skipped file is not counted
    alone, _ = run(tmp_path, [good], "alone")
    assert_same_histograms(hists_of(out), hists_of(alone))


def test_garbage_file_is_named(tmp_path):
    bad = tmp_path / "garbage.root"
    bad.write_bytes(b"this is not a ROOT file" * 100)
    with pytest.raises(InputError, match="garbage.root"):
        run(tmp_path, [str(bad)], "g")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no_such_file.root"):
        run(tmp_path, [str(tmp_path / "no_such_file.root")], "n")


def test_sample_without_events_gives_a_clear_message(tmp_path):
    from swift_rules.agc.generate import generate_file

    empty = tmp_path / "empty.root"
    assert generate_file(empty, "single_top_s_chan", "nominal", 0) == 0
    out, meta = run(tmp_path, [str(empty)], "e", sample="single_top_s_chan__nominal")
    assert meta["events"] == {"single_top_s_chan__nominal": 0}
    with pytest.raises(EmptySampleError, match="single_top_s_chan__nominal"):
        normalised_histogram(out, meta["events"])


def test_normalisation_uses_events_processed(tmp_path, tiny_dataset):
    out, meta = run(tmp_path, tiny_dataset[SAMPLE][:1], "one")
    h = normalised_histogram(out, meta["events"])
    raw = hists_of(out)
    w = (396.87 + 332.97) * 3378 / 4000  # the AGC's ttbar cross section
    np.testing.assert_allclose(h.values(), raw.values() * w, rtol=1e-12)
    np.testing.assert_allclose(h.variances(), raw.variances() * w * w, rtol=1e-12)


def test_cli_run_and_merge(tmp_path, tiny_dataset):
    files = tiny_dataset[SAMPLE]
    for i, f in enumerate(files):
        run_cli(
            "run",
            "agc::ttbar",
            "--sample",
            SAMPLE,
            "--files",
            f,
            "--workers",
            "1",
            "--out",
            str(tmp_path / f"p{i}.pkl"),
        )
    run_cli(
        "merge",
        str(tmp_path / "p0.pkl"),
        str(tmp_path / "p1.pkl"),
        "--out",
        str(tmp_path / "m.pkl"),
    )
    merged, meta = load_result(tmp_path / "m.pkl")
    whole, _ = run(tmp_path, files, "whole")
    assert meta["events"] == {SAMPLE: 8000} and meta["parts"] == 2
    assert_same_histograms(hists_of(merged), hists_of(whole), rel=1e-12)


def test_cli_reports_user_errors_without_traceback(tmp_path, tiny_dataset):
    proc = run_cli(
        "run",
        "agc::nope",
        "--sample",
        SAMPLE,
        "--files",
        tiny_dataset[SAMPLE][0],
        "--out",
        str(tmp_path / "x.pkl"),
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown stage 'agc::nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    from swift_rules.atomic import atomic_path

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)


def test_progress_lines_for_log_files(capsys):
    from swift_rules.runner import ProgressLog

    class Proc:
        def process(self, events):
            return {"n": len(events)}

        def postprocess(self, acc):
            return acc

    wrapped = ProgressLog(Proc(), total=30, label="s__v", interval=0.0)
    assert wrapped([0] * 10) == {"n": 10}
    wrapped([0] * 20)
    err = capsys.readouterr().err
    assert "s__v: 10/30 events (33%)" in err and "30/30 events (100%)" in err
    assert wrapped.postprocess({"n": 1}) == {"n": 1}

"""The AGC's analysis-level steps: histograms.root, the fit, plots and HEPData tables.

All tests run on a small synthetic ttbar-stage histogram (fixed seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import hist
import numpy as np
import pytest
import yaml

from swift_rules.agc import histograms as agc_hists
from swift_rules.agc.histograms import (
    MissingHistogramError,
    expected_keys,
    read_histograms_root,
    write_histograms_root,
)
from swift_rules.agc.samples import BINS, HIGH, LOW, PROCESSES, REGIONS

REFERENCE = Path("/work/shared/data/agc/reference_histos_1_file_per_process.json")

# Entries and event weight per process, and its observable's shape.
_PROCESS_SETUP = {
    "ttbar": (2400, 1.0),
    "single_top_s_chan": (150, 0.1),
    "single_top_t_chan": (300, 0.6),
    "single_top_tW": (300, 0.5),
    "wjets": (900, 1.5),
}


def _observable(rng: np.random.Generator, process: str, region: str, n: int) -> np.ndarray:
    if process == "ttbar" or process == "single_top_tW":
        if region == "4j2b":  # m_bjj: top-mass peak over a combinatorial tail
            peak = rng.normal(172.0, 25.0, n)
            tail = 120.0 + rng.exponential(120.0, n)
            return np.where(rng.random(n) < 0.65, peak, tail)
        return 120.0 + rng.gamma(3.0, 60.0, n)  # HT: turns on, peaks near 250 GeV
    # wjets and the other single tops: falling spectra
    return 110.0 + rng.exponential(90.0 if region == "4j1b" else 70.0, n)


def _variations(process: str) -> list[str]:
    return agc_hists.variations_for(process)


def make_agc_hist(
    seed: int = 7,
    variations: dict[str, list[str]] | None = None,
    setup: dict[str, tuple[int, float]] | None = None,
    observables: dict[str, dict[str, list[float]]] | None = None,
) -> hist.Hist:
    """A ttbar-stage histogram with every (region, process, variation) of the AGC filled.

    Weight and jet-kinematics variations reuse the nominal events (as in the analysis);
    the alternative ttbar samples (ME_var, PS_var, scaleup, scaledown) are independent.
    ``setup``: (entries, weight) of some processes instead of ``_PROCESS_SETUP``'s;
    ``observables``: ``{process: {region: values}}``, the nominal events of a process
    at these observable values (instead of random ones).
    """
    rng = np.random.default_rng(seed)
    h = hist.Hist(
        hist.axis.Regular(BINS, LOW, HIGH, name="observable", label="observable [GeV]"),
        hist.axis.StrCategory([], name="region", growth=True),
        hist.axis.StrCategory([], name="process", growth=True),
        hist.axis.StrCategory([], name="variation", growth=True),
        storage=hist.storage.Weight(),
    )
    for process, (n, weight) in {**_PROCESS_SETUP, **(setup or {})}.items():
        for region in REGIONS:
            fixed = (observables or {}).get(process, {}).get(region)
            if fixed is not None:
                x_nominal = np.asarray(fixed, dtype=float)
                nreg = len(x_nominal)
            else:
                nreg = n if region == "4j1b" else n // 2 if process == "ttbar" else n // 4
                x_nominal = _observable(rng, process, region, nreg)
            smear = rng.normal(0.0, 8.0, nreg)
            for variation in (variations or {}).get(process, _variations(process)):
                x, w = x_nominal, np.full(nreg, weight)
                if variation in ("ME_var", "PS_var", "scaleup", "scaledown"):
                    x = _observable(rng, process, region, nreg)  # an alternative sample
                if variation == "pt_scale_up":
                    x = x * 1.03
                elif variation == "pt_res_up":
                    x = x + smear
                elif variation.startswith("btag_var"):
                    i = int(variation.split("_")[2])
                    sign = 1.0 if variation.endswith("up") else -1.0
                    w = w * (1.0 + sign * (0.02 + 0.01 * i) * (1.0 + (x - 300.0) / 500.0))
                elif variation in ("scaleup", "scale_var_up"):
                    w = w * (1.05 + (x - 300.0) / 4000.0)
                elif variation in ("scaledown", "scale_var_down"):
                    w = w * (0.95 - (x - 300.0) / 4000.0)
                elif variation == "ME_var":
                    w = w * 1.04
                elif variation == "PS_var":
                    x = x * 0.99
                h.fill(observable=x, region=region, process=process, variation=variation, weight=w)
    return h


@pytest.fixture(scope="module")
def agc_hist() -> hist.Hist:
    return make_agc_hist()


@pytest.fixture(scope="module")
def histograms_root(agc_hist, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hists") / "histograms.root"
    write_histograms_root(agc_hist, path)
    return path


# ---- histograms.root --------------------------------------------------------------------


def test_histograms_root_keys_and_binning(agc_hist, histograms_root):
    hists = read_histograms_root(histograms_root)
    assert sorted(hists) == sorted(expected_keys())
    assert "4j1b_ttbar_ME_var" in hists
    assert "4j2b_wjets_scale_var_up" in hists
    assert "4j1b_ttbar_btag_var_0_up" in hists
    assert "4j1b_wjets_ME_var" not in hists  # only ttbar has alternative samples
    values, variances, edges = hists["4j2b_ttbar"]
    assert len(values) == 25
    np.testing.assert_allclose(edges, np.linspace(50, 550, 26))
    ref = agc_hist[:, "4j2b", "ttbar", "nominal"]
    np.testing.assert_allclose(values, ref.values())
    np.testing.assert_allclose(variances, ref.variances())
    assert np.all(variances > 0) or np.any(values == 0)
    # btag variation key: non-nominal suffix
    v_up = hists["4j1b_ttbar_btag_var_0_up"][0]
    assert not np.allclose(v_up, hists["4j1b_ttbar"][0])
    # flow bins are kept
    flow_vals = read_histograms_root(histograms_root, flow=True)["4j1b_ttbar"][0]
    assert len(flow_vals) == 27


def test_histograms_root_pseudodata(agc_hist, histograms_root):
    hists = read_histograms_root(histograms_root, flow=True)
    for region in REGIONS:
        me = hists[f"{region}_ttbar_ME_var"]
        ps = hists[f"{region}_ttbar_PS_var"]
        wj = hists[f"{region}_wjets"]
        data = hists[f"{region}_pseudodata"]
        np.testing.assert_allclose(data[0], (me[0] + ps[0]) / 2 + wj[0], rtol=1e-12)
        np.testing.assert_allclose(data[1], (me[1] + ps[1]) / 4 + wj[1], rtol=1e-12)


def _hist_from_reference(reference: dict) -> hist.Hist:
    """The ttbar-stage histogram behind the AGC's reference file (flow bins included)."""
    h = hist.Hist(
        hist.axis.Regular(BINS, LOW, HIGH, name="observable"),
        hist.axis.StrCategory([], name="region", growth=True),
        hist.axis.StrCategory([], name="process", growth=True),
        hist.axis.StrCategory([], name="variation", growth=True),
        storage=hist.storage.Weight(),
    )
    cells = []
    for region in REGIONS:
        for process in PROCESSES:
            for variation in agc_hists.variations_for(process):
                cells.append((region, process, variation))
    for region, process, variation in cells:  # create the categories
        h.fill(observable=-1.0, region=region, process=process, variation=variation, weight=0)
    for region, process, variation in cells:
        contents = np.asarray(
            reference[agc_hists.histogram_key(region, process, variation)]["contents"]
        )
        h[:, region, process, variation] = np.stack([contents, contents], axis=-1)
    return h


def test_histograms_root_matches_agc_reference(tmp_path):
    if not REFERENCE.exists():
        pytest.skip(f"AGC reference histograms not available at {REFERENCE}")
    reference = json.loads(REFERENCE.read_text())
    assert sorted(reference) == sorted(expected_keys())
    # the AGC's histograms, through write_histograms_root: same keys, contents, pseudodata
    path = tmp_path / "histograms.root"
    write_histograms_root(_hist_from_reference(reference), path)
    written = read_histograms_root(path, flow=True)
    assert sorted(written) == sorted(reference)
    for key, ref in reference.items():
        values, _, edges = written[key]
        np.testing.assert_allclose(edges, ref["edges"])
        np.testing.assert_allclose(values, ref["contents"], rtol=1e-12, err_msg=key)


def test_missing_variation_skipped_then_named_by_the_fit(tmp_path):
    variations = {p: ["nominal"] for p in PROCESSES}
    variations["ttbar"] = ["nominal", "ME_var"]  # no PS_var: no AGC pseudodata
    h = make_agc_hist(seed=3, variations=variations)
    path = tmp_path / "histograms.root"
    keys = write_histograms_root(h, path)
    assert "4j1b_pseudodata" not in keys
    assert "4j1b_ttbar_ME_var" in keys
    assert "4j1b_ttbar_PS_var" not in keys

    from swift_rules.agc.inference import build_workspace

    with pytest.raises(MissingHistogramError) as err:
        build_workspace(path, tmp_path / "fit")
    message = str(err.value)
    assert "4j1b_pseudodata" in message
    assert "4j1b_ttbar_PS_var" in message
    assert "4j2b_wjets_scale_var_up" in message
    assert "4j1b_ttbar_ME_var," not in message  # present: not reported


def test_pseudodata_needs_its_inputs():
    h = make_agc_hist(seed=5, variations={p: ["nominal"] for p in PROCESSES})
    with pytest.raises(MissingHistogramError, match="4j1b_ttbar_ME_var"):
        agc_hists.pseudodata(h, "4j1b")
    with pytest.raises(MissingHistogramError, match="5j3b"):
        agc_hists.pseudodata(h, "5j3b", ttbar_scale=1.0)


# ---- the fit -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def closure(agc_hist, tmp_path_factory) -> dict[float, tuple[Path, dict]]:
    from swift_rules.agc.inference import fit_pseudodata

    out = {}
    for scale in (1.0, 1.2):
        fit_dir = tmp_path_factory.mktemp(f"closure_{scale}")
        out[scale] = (fit_dir, fit_pseudodata(agc_hist, scale, fit_dir))
    return out


def test_fit_templates_rebinned(closure):
    fit_dir, _ = closure[1.0]
    full = read_histograms_root(fit_dir / "histograms.root")
    templates = read_histograms_root(fit_dir / "fit_templates.root")
    assert set(templates) <= set(full)
    assert "4j2b_ttbar_scale_var_up" not in templates  # not a template of the fit
    assert {"4j1b_pseudodata", "4j2b_wjets_scale_var_up", "4j1b_ttbar_btag_var_3_down"} <= set(
        templates
    )
    for key, (values, variances, edges) in templates.items():
        np.testing.assert_allclose(edges, np.arange(110.0, 551.0, 40.0))
        assert len(values) == 11
        v, var, _ = full[key]
        np.testing.assert_allclose(values, v[3::2] + v[4::2] + 1e-6, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(variances, var[3::2] + var[4::2] + 1e-12, rtol=1e-12)


def test_closure(closure):
    for scale, (fit_dir, results) in closure.items():
        poi = results["poi"]
        assert poi["name"] == "ttbar_norm"
        assert 0 < poi["uncertainty"] < 0.3
        assert abs(poi["bestfit"] - scale) < poi["uncertainty"]
        assert abs(poi["bestfit"] - scale) < 1e-3  # Asimov-like data: the fit comes back exactly
        assert results["converged"] is True
        assert results["fit"]["valid"] and results["fit"]["hessian_posdef"]
        assert results["fit"]["nonfinite_nll_evaluations"] == 0
        assert results["template_checks"]["checks"]  # the template checks are recorded
        on_disk = json.loads((fit_dir / "fit_results.json").read_text())
        assert on_disk == results
        labels = [p["label"] for p in results["parameters"]]
        assert labels == results["labels"]
        for name in (
            "ME variation",
            "PS variation",
            "Luminosity",
            "b-tag NP 4",
            "W+jets scale variations",
            "Jet energy scale",
        ):
            assert name in labels
        n = len(labels)
        corr = np.array(results["correlation_matrix"])
        assert corr.shape == (n, n)
        np.testing.assert_allclose(np.diag(corr), 1.0, rtol=1e-6)
        assert {"pyhf", "cabinetry"} <= set(results["versions"])
        assert results["n_bins"] == {"4j1b CR": 11, "4j2b SR": 11}
        config = yaml.safe_load((fit_dir / "cabinetry_config.yml").read_text())
        assert config["General"]["POI"] == "ttbar_norm"
        workspace = json.loads((fit_dir / "workspace.json").read_text())
        assert workspace["measurements"][0]["config"]["poi"] == "ttbar_norm"


def test_fit_results_deterministic(closure, tmp_path):
    from swift_rules.agc.inference import build_workspace, run_fit

    fit_dir, _ = closure[1.2]
    workspace = build_workspace(fit_dir / "histograms.root", tmp_path)
    assert (tmp_path / "workspace.json").read_bytes() == (fit_dir / "workspace.json").read_bytes()
    run_fit(workspace, tmp_path)
    assert (tmp_path / "fit_results.json").read_bytes() == (
        fit_dir / "fit_results.json"
    ).read_bytes()


# Like the generated 'tiny' set: W+jets is a handful of events of large weight (30 x a
# ttbar event's), some next to a fit-bin edge (110, 150, 190, ..., 550 GeV) that the
# jet-energy scale (x 1.03) moves them across: JES/JER templates that are pure MC noise,
# with negative bins once symmetrised.
SPARSE_WJETS = {"4j1b": [148.0, 268.0, 381.0], "4j2b": [189.0, 505.0]}


@pytest.fixture(scope="module")
def sparse_wjets_fit(tmp_path_factory) -> tuple[Path, dict, dict]:
    from swift_rules.agc.inference import build_workspace, run_fit

    h = make_agc_hist(seed=11, setup={"wjets": (0, 30.0)}, observables={"wjets": SPARSE_WJETS})
    fit_dir = tmp_path_factory.mktemp("sparse_wjets")
    histograms_root = fit_dir / "histograms.root"
    write_histograms_root(h, histograms_root)  # the AGC pseudodata: (ME + PS) / 2 + W+jets
    workspace = build_workspace(histograms_root, fit_dir)
    return fit_dir, workspace, run_fit(workspace, fit_dir)


def test_fit_converges_with_sparse_noisy_wjets(sparse_wjets_fit):
    fit_dir, workspace, results = sparse_wjets_fit
    templates = read_histograms_root(fit_dir / "fit_templates.root")
    assert np.count_nonzero(templates["4j2b_wjets"][0] > 1) == 2  # really a handful
    fit = results["fit"]
    assert results["converged"] is True
    assert fit["valid"] and fit["hessian_posdef"]
    assert fit["edm"] < 10 * fit["edm_goal"]  # Minuit's criterion of a valid minimum
    assert fit["edm_hessian"] < 0.01  # also with the finite-difference covariance
    assert fit["nonfinite_nll_evaluations"] == 0
    assert not fit["has_reached_call_limit"]
    poi = results["poi"]
    assert 0 < poi["uncertainty"] < 0.3
    assert abs(poi["bestfit"] - 1.0) < 2 * poi["uncertainty"]
    assert json.loads((fit_dir / "fit_results.json").read_text()) == results
    # the noise-only W+jets JES/JER shapes are pruned, and that is recorded
    checks = {
        (c["region"], c["sample"], c["systematic"]): c for c in results["template_checks"]["checks"]
    }
    for region in ("4j1b CR", "4j2b SR"):
        for systematic in ("Jet energy scale", "Jet energy resolution"):
            check = checks[(region, "W+jets", systematic)]
            assert check["shape_prunable"]
            assert check["shape_tests"]["Up"]["p_value"] >= 0.05
            assert check["actions"] == ["shape pruned: not significant"]
    # shapes that are not noise stay: b-tag reweighting, ttbar alternative samples
    assert checks[("4j2b SR", "W+jets", "b-tag NP 1")]["actions"] == []
    assert not any("pruned" in a for a in checks[("4j2b SR", "ttbar", "ME variation")]["actions"])
    # the model fitted (workspace.json) has no negative template bin and no such shape
    assert json.loads((fit_dir / "workspace.json").read_text()) == workspace
    for channel in workspace["channels"]:
        for sample in channel["samples"]:
            for modifier in sample["modifiers"]:
                if modifier["type"] == "histosys":
                    assert min(modifier["data"]["hi_data"] + modifier["data"]["lo_data"]) >= 0
                    assert (sample["name"], modifier["name"][:10]) != ("W+jets", "Jet energy")
                if modifier["type"] == "normsys":
                    assert modifier["data"]["lo"] > 0 and modifier["data"]["hi"] > 0


def test_fit_results_deterministic_sparse_wjets(sparse_wjets_fit, tmp_path):
    from swift_rules.agc.inference import build_workspace, run_fit

    fit_dir, _, _ = sparse_wjets_fit
    run_fit(build_workspace(fit_dir / "histograms.root", tmp_path), tmp_path)
    for name in ("workspace.json", "template_checks.json", "fit_results.json"):
        assert (tmp_path / name).read_bytes() == (fit_dir / name).read_bytes(), name


def test_positive_histosys():
    from swift_rules.agc.inference import positive_histosys

    def code4p(n, hi, lo, alpha):  # pyhf's code4p, |alpha| <= 1
        s, a = (hi - lo) / 2, (hi + lo - 2 * n) / 16
        return n + alpha * s + alpha**2 * (15 + alpha**2 * (3 * alpha**2 - 10)) * a

    alpha = np.linspace(-1, 1, 100_001)
    nominal = [0.0, 1e-6, 5177.0, 100.0, 10.0, 0.0]
    hi = [945.0, 2000.0, 10413.0, 150.0, 0.0, 0.0]
    lo = [-945.0, -2000.0, -58.9, 50.0, 1000.0, 0.0]  # symmetrised: 2 nominal - hi
    assert min(code4p(n, h, low, alpha).min() for n, h, low in zip(nominal, hi, lo)) < 0
    new_hi, new_lo, changed = positive_histosys(nominal, hi, lo)
    assert changed == 4
    for n, h, low in zip(nominal, new_hi, new_lo, strict=True):
        assert code4p(n, h, low, alpha).min() >= -1e-9 * max(1.0, h, low)
    assert new_hi[:3] == hi[:3]  # the observed variation is kept
    assert new_lo[0] == 945.0  # empty nominal bin: both directions add the variation
    assert 0 <= new_lo[2] < 100  # raised from -58.9 just enough
    assert new_lo[4] == 1000.0 and 0 < new_hi[4] < 1000.0  # dip at alpha > 0: hi raised
    assert (new_hi[3], new_lo[3]) == (150.0, 50.0) and (new_hi[5], new_lo[5]) == (0.0, 0.0)
    assert positive_histosys([1.0, 2.0], [1.5, 2.5], [0.5, 1.5]) == ([1.5, 2.5], [0.5, 1.5], 0)


def test_failed_fit_is_reported_not_returned(closure, tmp_path, monkeypatch, caplog):
    from swift_rules.agc import fit as agc_fit
    from swift_rules.agc import inference
    from swift_rules.errors import SwiftError

    fit_dir, _ = closure[1.0]
    workspace = json.loads((fit_dir / "workspace.json").read_text())
    monkeypatch.setattr(agc_fit, "MAXITER", 20)  # Migrad stops far from the minimum
    with pytest.raises(inference.FitNotConvergedError, match="did not converge") as err:
        inference.run_fit(workspace, tmp_path)
    assert isinstance(err.value, SwiftError)  # the command line prints it as one error
    assert "call limit" in str(err.value)
    written = json.loads((tmp_path / "fit_results.json").read_text())
    assert written["converged"] is False
    assert written["fit"]["valid"] is False
    assert written["fit"]["has_reached_call_limit"] is True
    assert written["fit"]["strategy"] == 2  # the fallback was tried
    results = inference.run_fit(workspace, tmp_path, strict=False)
    assert results["converged"] is False
    assert "did not converge" in caplog.text


# ---- plots and HEPData -------------------------------------------------------------------


def test_plots(closure, tmp_path):
    from swift_rules.agc.plots import make_plots

    fit_dir, _ = closure[1.2]
    paths = make_plots(fit_dir / "histograms.root", fit_dir, tmp_path / "plots")
    names = {p.name for p in paths}
    for stem in (
        "stack_4j1b",
        "stack_4j2b",
        "prefit_4j1b",
        "prefit_4j2b",
        "postfit_4j1b",
        "postfit_4j2b",
        "pulls",
        "correlation_matrix",
    ):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000
        assert data.startswith(b"\x89PNG" if p.suffix == ".png" else b"%PDF")
        if p.suffix == ".pdf":
            assert b"CreationDate" not in data
    assert not list((tmp_path / "plots").glob(".tmp-*"))
    # Drawn by two forked processes (the rule's --workers), the files are the same.
    parallel = make_plots(fit_dir / "histograms.root", fit_dir, tmp_path / "plots2", workers=2)
    assert [p.name for p in parallel] == [p.name for p in paths]
    for mine, theirs in zip(paths, parallel, strict=True):
        assert mine.read_bytes() == theirs.read_bytes(), mine.name


def test_hepdata(histograms_root, tmp_path):
    from swift_rules.agc.hepdata import write_hepdata

    outdir = tmp_path / "hepdata"
    (outdir).mkdir()
    (outdir / "stale_table.yaml").write_text("---\n")
    submission = write_hepdata(histograms_root, outdir)
    assert submission == outdir / "submission.yaml"
    assert not (outdir / "stale_table.yaml").exists()
    docs = list(yaml.safe_load_all(submission.read_text()))
    tables = [d["data_file"] for d in docs if "data_file" in d]
    assert tables == ["histograms_4j1b.yaml", "histograms_4j2b.yaml"]
    table = yaml.safe_load((outdir / "histograms_4j2b.yaml").read_text())
    assert len(table["independent_variables"][0]["values"]) == 25
    headers = [v["header"]["name"] for v in table["dependent_variables"]]
    assert headers[-1] == "Events (Pseudodata)"
    assert len(headers) == len(PROCESSES) + 1
    qualifiers = {q["name"] for q in table["dependent_variables"][0]["qualifiers"]}
    assert {"REACTION", "SQRT(S)", "LUMINOSITY"} <= qualifiers
    first = (outdir / "submission.tar.gz").read_bytes()
    write_hepdata(histograms_root, outdir)
    assert (outdir / "submission.tar.gz").read_bytes() == first

"""Our port of the ROOT team's RDataFrame AGC CMS ttbar analysis, run in .venv-root.

    .venv-root/bin/python benchmarks/agc_rdataframe_port.py JOB.json REPORT.json

Follows ``book_histos`` and ``define_trijet_mass`` of root-project/analysis-grand-challenge
(analyses/cms-open-data-ttbar/analysis.py): one RDataFrame per sample, the object
selection as RVec masks, the 4j1b (HT) and 4j2b (m_bjj: ``Combinations``, ``Take``,
``ArgMax`` of the b-tagged trijets' pT) regions, the systematics as ``Vary`` (jet pT
scale and resolution, b-tag and W+jets weights) and ``VariationsFor``, every graph run
by one ``RunGraphs``, on one thread (no ``EnableImplicitMT``).

What is ours rather than theirs, to compare bin by bin with swift_rules.agc.ttbar
(the settings come in JOB.json, from that module): float64 arithmetic (jet pT, HT,
weights), the jet-resolution factor seeded from the event identity, unit weights (our
stage normalises after merging; the RDF AGC's constant cross-section weight costs the
same), and the b-tag branch and threshold. See agc_rdataframe.h.

JOB.json: {"samples": [{"name", "process", "variation", "files"}], "btag_branch",
"btag_threshold", "bins", "low", "high", "jes_factor", "jer_width", "btag_step",
"wjets_step", "arithmetic"}. ``arithmetic`` "ours" (the default) is the comparable port;
"original" keeps the RDF AGC's float32 jet pT, HT and weights and its pT-digit smearing
(``agc_original::`` in the header), to time them and to see what they change.

REPORT.json: per sample its events and its histograms (``{region: {variation: {"values",
"variances"}}}``, flow bins included), and timings: ``import_s`` (import ROOT),
``declare_s`` (the helpers), ``book_s`` (building the graphs: ROOT 6.40 just-in-time
compiles each Define and Filter as it is booked), ``jit_s`` (what RunGraphs reports
compiling before its loops), ``loops_s`` and ``loops_cpu_s`` (the event loops, RDF's own
clock), ``run_graphs_s``, and ``whole_s`` (helpers + booking + RunGraphs). Imports
nothing of the package and needs nothing but ROOT.
"""

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REGIONS = ("4j1b", "4j2b")


def define_trijet_mass(df, btag, threshold):
    """The RDF AGC's trijet mass: the b-tagged trijet of largest pT (4j2b)."""
    df = df.Filter(f"Sum({btag}_cut > {threshold}) > 1")
    df = df.Define("Jet_p4", "ConstructP4(Jet_pt_cut, Jet_eta_cut, Jet_phi_cut, Jet_mass_cut)")
    df = df.Define("Trijet_idx", "Combinations(Jet_pt_cut, 3)")
    df = df.Define(
        "Trijet_btag",
        f"""
        auto J1 = Take({btag}_cut, Trijet_idx[0]);
        auto J2 = Take({btag}_cut, Trijet_idx[1]);
        auto J3 = Take({btag}_cut, Trijet_idx[2]);
        return J1 > {threshold} || J2 > {threshold} || J3 > {threshold};
        """,
    )
    df = df.Define(
        "Trijet_p4",
        """
        auto J1 = Take(Jet_p4, Trijet_idx[0]);
        auto J2 = Take(Jet_p4, Trijet_idx[1]);
        auto J3 = Take(Jet_p4, Trijet_idx[2]);
        return (J1 + J2 + J3)[Trijet_btag];
        """,
    )
    df = df.Define(
        "Trijet_pt",
        "return Map(Trijet_p4, [](const ROOT::Math::PxPyPzMVector &v) { return v.Pt(); })",
    )
    return df.Define("Trijet_mass", "Trijet_p4[ArgMax(Trijet_pt)].M()")


def book_histos(ROOT, df, process, variation, job):
    """The booked histograms of one sample: {region: result}, plus its event count."""
    btag, threshold = f"Jet_{job['btag_branch']}", repr(float(job["btag_threshold"]))
    count = df.Count()
    jes, jer = repr(float(job["jes_factor"])), repr(float(job["jer_width"]))
    btag_step, wjets_step = repr(float(job["btag_step"])), repr(float(job["wjets_step"]))
    original = job.get("arithmetic", "ours") == "original"
    if original:  # the RDF AGC's: float32 jet pT, its pT-digit smearing
        ns, vec = "agc_original::", "ROOT::RVecF"
        jes = f"static_cast<float>({jes})"
        resolution = f"agc_original::jet_pt_resolution(Jet_pt, {jer})"
    else:  # our stage's float64 jet pT and seeded smearing
        ns, vec = "", "ROOT::RVecD"
        df = df.Redefine("Jet_pt", "ROOT::RVecD(Jet_pt)")
        resolution = f"jet_pt_resolution(run, luminosityBlock, event, Jet_pt.size(), {jer})"
    df = df.Define("Weights", "1.0")
    if variation == "nominal":
        df = df.Vary(
            "Jet_pt",
            f"ROOT::RVec<{vec}>{{Jet_pt * {jes}, Jet_pt * {resolution}}}",
            ["pt_scale_up", "pt_res_up"],
            "jet_pt",
        )
        if process == "wjets":
            df = df.Vary(
                "Weights",
                f"Weights * {ns}flat_variation({wjets_step})",
                ["scale_var_up", "scale_var_down"],
                "scale_var",
            )
    df = (
        df.Define(
            "Electron_mask",
            "Electron_pt > 30 && abs(Electron_eta) < 2.1 && Electron_sip3d < 4"
            " && Electron_cutBased == 4",
        )
        .Define(
            "Muon_mask",
            "Muon_pt > 30 && abs(Muon_eta) < 2.1 && Muon_sip3d < 4 && Muon_tightId"
            " && Muon_pfRelIso04_all < 0.15",
        )
        .Filter("Sum(Electron_mask) + Sum(Muon_mask) == 1")
        .Define("Jet_mask", "Jet_pt > 30 && abs(Jet_eta) < 2.4 && Jet_jetId == 6")
        .Filter("Sum(Jet_mask) >= 4")
    )
    df = (
        df.Define("Jet_pt_cut", "Jet_pt[Jet_mask]")
        .Define(f"{btag}_cut", f"{btag}[Jet_mask]")
        .Define("Jet_eta_cut", "Jet_eta[Jet_mask]")
        .Define("Jet_phi_cut", "Jet_phi[Jet_mask]")
        .Define("Jet_mass_cut", "Jet_mass[Jet_mask]")
    )
    if variation == "nominal":
        df = df.Vary(
            "Weights",
            f"ROOT::RVecD{{Weights * {ns}btag_weight_variation(Jet_pt_cut, {btag_step})}}",
            [f"btag_var_{i}_{d}" for i in range(4) for d in ("up", "down")],
            "btag_var",
        )
    df4j1b = df.Filter(f"Sum({btag}_cut > {threshold}) == 1").Define("HT", "Sum(Jet_pt_cut)")
    df4j2b = define_trijet_mass(df, btag, threshold)
    results = {}
    for frame, observable, region in ((df4j1b, "HT", "4j1b"), (df4j2b, "Trijet_mass", "4j2b")):
        model = ROOT.RDF.TH1DModel(
            f"{region}_{process}_{variation}", process, job["bins"], job["low"], job["high"]
        )
        results[region] = frame.Histo1D(model, observable, "Weights")
    return results, count


def contents(h):
    n = h.GetNbinsX() + 2
    sumw2 = h.GetSumw2()
    values = [h.GetBinContent(i) for i in range(n)]
    variances = [sumw2[i] for i in range(n)] if sumw2.GetSize() else list(values)
    return {"values": values, "variances": variances}


LOOP = re.compile(r"Finished event loop number \d+ \(([\d.e+-]+)s CPU, ([\d.e+-]+)s elapsed\)")
JIT = re.compile(r"Just-in-time compilation phase.*completed in ([\d.e+-]+) seconds")


def run_graphs(ROOT, handles):
    """RunGraphs with RDF's log on: (wall s, jit s, loops s, loops CPU s, number of loops)."""
    verbosity = ROOT.RLogScopedVerbosity(ROOT.Detail.RDF.RDFLogChannel(), ROOT.ROOT.ELogLevel.kInfo)
    # RDF logs to stderr (file descriptor 2): catch it in a file for the timings.
    with tempfile.TemporaryFile(mode="w+") as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            started = time.perf_counter()
            ROOT.RDF.RunGraphs(handles)
            wall = time.perf_counter() - started
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        del verbosity
        log.seek(0)
        text = log.read()
    if os.environ.get("AGC_RDF_LOG"):
        sys.stderr.write(text)
    loops = [(float(cpu), float(elapsed)) for cpu, elapsed in LOOP.findall(text)]
    jit = sum(float(s) for s in JIT.findall(text))
    if not loops:
        raise RuntimeError(f"no event-loop timings in RDF's log:\n{text[-2000:]}")
    return wall, jit, sum(e for _, e in loops), sum(c for c, _ in loops), len(loops)


def main(job_path, report_path):
    job = json.loads(Path(job_path).read_text())
    started = time.perf_counter()
    import ROOT

    ROOT.gROOT.SetBatch(True)
    # Load RDataFrame's libraries before declaring code that runs it (ROOT from PyPI).
    for lib in ("RIO", "Tree", "TreePlayer", "ROOTVecOps", "ROOTDataFrame", "GenVector"):
        ROOT.gSystem.Load("lib" + lib)
    ROOT.TH1.AddDirectory(False)
    report = {"import_s": time.perf_counter() - started, "root": ROOT.gROOT.GetVersion()}
    if ROOT.IsImplicitMTEnabled():
        raise RuntimeError("ImplicitMT is on: this port runs on one thread")

    whole = time.perf_counter()
    if not ROOT.gInterpreter.Declare(f'#include "{HERE / "agc_rdataframe.h"}"'):
        raise RuntimeError("cannot declare agc_rdataframe.h")
    report["declare_s"] = time.perf_counter() - whole

    started = time.perf_counter()
    booked, handles = [], []
    for sample in job["samples"]:
        files = ROOT.std.vector["std::string"]()
        for f in sample["files"]:
            files.push_back(str(f))
        df = ROOT.RDataFrame("Events", files)
        histos, count = book_histos(ROOT, df, sample["process"], sample["variation"], job)
        handles += [count, *histos.values()]
        if sample["variation"] == "nominal":
            histos = {r: ROOT.RDF.Experimental.VariationsFor(h) for r, h in histos.items()}
        booked.append((sample, histos, count))
    report["book_s"] = time.perf_counter() - started

    wall, jit, loops, loops_cpu, n_loops = run_graphs(ROOT, handles)
    if n_loops != len(booked):
        raise RuntimeError(f"{n_loops} event loops timed in RDF's log, {len(booked)} expected")
    report.update(
        run_graphs_s=wall, jit_s=jit, loops_s=loops, loops_cpu_s=loops_cpu, n_loops=n_loops,
        whole_s=time.perf_counter() - whole,
    )  # fmt: skip

    report["samples"] = {}
    for sample, histos, count in booked:
        out = {"events": int(count.GetValue()), "histograms": {}}
        for region, h in histos.items():
            if sample["variation"] == "nominal":
                by_variation = {}
                for key in h.GetKeys():
                    name = str(key)
                    name = name.split(":", 1)[1] if ":" in name else name
                    by_variation[name] = contents(h[key])
            else:
                by_variation = {sample["variation"]: contents(h.GetValue())}
            out["histograms"][region] = by_variation
        report["samples"][sample["name"]] = out
    Path(report_path).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

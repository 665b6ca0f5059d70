"""Run the independent reference of swift_rules.htautau: the original analysis' skim.cxx,
histograms.py and the QCD estimate of plot.py, on RDataFrame (ROOT from PyPI).

    .venv-root/bin/python tests/reference/htautau/run.py JOB.json

JOB.json: {"workdir": DIR, "samples": [{"name", "files", "xsec", "nevents"}, ...],
"labels": [[name, label], ...], "implicit_mt": false}. Writes in DIR: {name}Skim.root per
sample, histograms.root (histograms.py's names), qcd.root ({variable}/{group}) and
report.json (cut flows, the skims' column types, timings). Imports nothing of the package.
"""

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(job_path):
    job = json.loads(Path(job_path).read_text())
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)

    import ROOT

    ROOT.gROOT.SetBatch(True)
    # Load RDataFrame's libraries before declaring code that runs it (ROOT from PyPI).
    for lib in ("RIO", "Tree", "TreePlayer", "ROOTVecOps", "ROOTDataFrame", "GenVector"):
        ROOT.gSystem.Load("lib" + lib)
    if job.get("implicit_mt"):
        ROOT.EnableImplicitMT()
    t0 = time.perf_counter()
    ROOT.gInterpreter.Declare((HERE / "skim.cxx").read_text())
    report = {"declare_s": time.perf_counter() - t0, "skims": {}, "column_types": {}}

    for sample in job["samples"]:
        files = ROOT.std.vector["std::string"]()
        for f in sample["files"]:
            files.push_back(str(f))
        output = str(workdir / f"{sample['name']}Skim.root")
        t0 = time.perf_counter()
        cuts = ROOT.SkimSample(
            sample["name"],
            files,
            output,
            float(sample.get("xsec", 0.0)),
            float(sample.get("nevents", 1)),
        )
        report["skims"][sample["name"]] = {
            "cutflow": [[str(c.first), int(c.second)] for c in cuts],
            "seconds": time.perf_counter() - t0,
        }
        df = ROOT.RDataFrame("Events", output)
        report["column_types"][sample["name"]] = {
            str(c): str(df.GetColumnType(c)) for c in df.GetColumnNames()
        }

    import histograms
    import qcd

    t0 = time.perf_counter()
    labels = [tuple(x) for x in job["labels"]]
    report["histograms"] = histograms.main(
        str(workdir), str(workdir / "histograms.root"), labels, job.get("implicit_mt", False)
    )
    report["histograms_s"] = time.perf_counter() - t0
    qcd.main(str(workdir / "histograms.root"), str(workdir / "qcd.root"), list(histograms.ranges))
    (workdir / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

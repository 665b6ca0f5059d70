# ruff: noqa: UP032 (the original's code, kept as it is)
# The data-driven QCD estimate of cms-opendata-analyses/HiggsTauTauNanoAODOutreachAnalysis
# (plot.py), ported to run as the independent reference of swift_rules.htautau.
#
# getHistogram and the histogram arithmetic of main are the original's (W = W1J + W2J + W3J,
# data = dataRunB + dataRunC, QCD from the control region). What the port changes: it
# writes the histograms it would stack ({variable}/{group}) to a file instead of drawing
# them, with the signals unscaled (plot.py scales ggH by 10 and qqH by 100 only to draw).
# Run in .venv-root (ROOT from PyPI), never with the package.

import ROOT

ROOT.gROOT.SetBatch(True)


# Retrieve a histogram from the input file based on the process and the variable
# name
def getHistogram(tfile, name, variable, tag=""):
    name = "{}_{}{}".format(name, variable, tag)
    h = tfile.Get(name)
    if not h:
        raise Exception("Failed to load histogram {}.".format(name))
    return h


def main(histograms, output, variables):
    tfile = ROOT.TFile(histograms, "READ")
    out = ROOT.TFile(output, "RECREATE")
    for variable in variables:
        # Simulation
        ggH = getHistogram(tfile, "ggH", variable)
        qqH = getHistogram(tfile, "qqH", variable)

        W = getHistogram(tfile, "W1J", variable)
        W2J = getHistogram(tfile, "W2J", variable)
        W3J = getHistogram(tfile, "W3J", variable)
        W.Add(W2J)
        W.Add(W3J)

        TT = getHistogram(tfile, "TT", variable)

        ZLL = getHistogram(tfile, "ZLL", variable)

        ZTT = getHistogram(tfile, "ZTT", variable)

        # Data
        data = getHistogram(tfile, "dataRunB", variable)
        dataRunC = getHistogram(tfile, "dataRunC", variable)
        data.Add(dataRunC)

        # Data-driven QCD estimation
        QCD = getHistogram(tfile, "dataRunB", variable, "_cr")
        QCDRunC = getHistogram(tfile, "dataRunC", variable, "_cr")
        QCD.Add(QCDRunC)
        for name in ["W1J", "W2J", "W3J", "TT", "ZLL", "ZTT"]:
            ss = getHistogram(tfile, name, variable, "_cr")
            QCD.Add(ss, -1.0)
        for i in range(1, QCD.GetNbinsX() + 1):
            if QCD.GetBinContent(i) < 0.0:
                QCD.SetBinContent(i, 0.0)
        QCDScaleFactor = 0.80
        QCD.Scale(QCDScaleFactor)

        # Port: write what plot.py stacks and overlays.
        directory = out.mkdir(variable)
        directory.cd()
        for h, group in [
            (ggH, "ggH"),
            (qqH, "qqH"),
            (W, "W"),
            (TT, "TT"),
            (ZLL, "ZLL"),
            (ZTT, "ZTT"),
            (data, "data"),
            (QCD, "QCD"),
        ]:
            h.Write(group)
        out.cd()
    out.Close()
    tfile.Close()

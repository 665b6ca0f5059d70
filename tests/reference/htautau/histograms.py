# ruff: noqa: UP032 (the original's code, kept as it is)
# The histogramming step of cms-opendata-analyses/HiggsTauTauNanoAODOutreachAnalysis
# (histograms.py), ported to run as the independent reference of swift_rules.htautau.
#
# ranges, bookHistogram, writeHistogram, filterGenMatch and the body of main are the
# original's. What the port changes, and why:
#   - main takes the directory of the skims, the output file and the (name, label) pairs of
#     the samples present, instead of fixed paths;
#   - besides the original's histograms ("{label}_{variable}", "{label}_{variable}_cr",
#     filled with the column "weight"), it books the same histograms unweighted
#     ("..._counts"): the number of events in each bin, to compare exactly;
#   - ImplicitMT is optional (the order of filling does not change a histogram) and
#     ROOT.GetImplicitMTPoolSize, which ROOT 6.40 no longer has, is not called;
#   - the cut-flow reports are returned instead of printed.
# Run in .venv-root (ROOT from PyPI), never with the package.

import ROOT

ROOT.gROOT.SetBatch(True)


# Declare the range of the histogram for each variable
#
# Each entry in the dictionary contains of the variable name as key and a tuple
# specifying the histogram layout as value. The tuple sets the number of bins,
# the lower edge and the upper edge of the histogram.
default_nbins = 30
ranges = {
    "pt_1": (default_nbins, 17, 70),
    "pt_2": (default_nbins, 20, 70),
    "eta_1": (default_nbins, -2.1, 2.1),
    "eta_2": (default_nbins, -2.3, 2.3),
    "phi_1": (default_nbins, -3.14, 3.14),
    "phi_2": (default_nbins, -3.14, 3.14),
    "iso_1": (default_nbins, 0, 0.10),
    "iso_2": (default_nbins, 0, 0.10),
    "q_1": (2, -2, 2),
    "q_2": (2, -2, 2),
    "pt_met": (default_nbins, 0, 60),
    "phi_met": (default_nbins, -3.14, 3.14),
    "m_1": (default_nbins, 0, 0.2),
    "m_2": (default_nbins, 0, 2),
    "mt_1": (default_nbins, 0, 100),
    "mt_2": (default_nbins, 0, 100),
    "dm_2": (11, 0, 11),
    "m_vis": (default_nbins, 20, 140),
    "pt_vis": (default_nbins, 0, 60),
    "jpt_1": (default_nbins, 30, 70),
    "jpt_2": (default_nbins, 30, 70),
    "jeta_1": (default_nbins, -4.7, 4.7),
    "jeta_2": (default_nbins, -4.7, 4.7),
    "jphi_1": (default_nbins, -3.14, 3.14),
    "jphi_2": (default_nbins, -3.14, 3.14),
    "jm_1": (default_nbins, 0, 20),
    "jm_2": (default_nbins, 0, 20),
    "jbtag_1": (default_nbins, 0, 1.0),
    "jbtag_2": (default_nbins, 0, 1.0),
    "npv": (25, 5, 30),
    "njets": (5, 0, 5),
    "mjj": (default_nbins, 0, 400),
    "ptjj": (default_nbins, 0, 200),
    "jdeta": (default_nbins, -9.4, 9.4),
}


# Book a histogram for a specific variable
def bookHistogram(df, variable, range_):
    return df.Histo1D(
        ROOT.ROOT.RDF.TH1DModel(variable, variable, range_[0], range_[1], range_[2]),
        variable,
        "weight",
    )


# Port: the same histogram, unweighted.
def bookCounts(df, variable, range_):
    return df.Histo1D(
        ROOT.ROOT.RDF.TH1DModel(variable, variable, range_[0], range_[1], range_[2]), variable
    )


# Write a histogram with a given name to the output ROOT file
def writeHistogram(h, name):
    h.SetName(name)
    h.Write()


# Apply a selection based on generator information about the tau
#
# See the skimming step for further details about this variable.
def filterGenMatch(df, label):
    if label == "ZTT":
        return df.Filter("gen_match == true", "Select genuine taus")
    elif label == "ZLL":
        return df.Filter("gen_match == false", "Select fake taus")
    else:
        return df


def _report(report):
    return [(cut.GetName(), int(cut.GetAll()), int(cut.GetPass())) for cut in report]


# Main function of the histogramming step
#
# The function loops over the outputs from the skimming step and produces the
# required histograms for the final plotting.
# Note that we perform a set of secondary selections on the skimmed dataset. First,
# we perform a second reduction with the baseline selection to a signal-enriched
# part of the dataset. Second, we select besides the signal region a control region
# which is used to estimate the contribution of QCD events producing the muon-tau
# pair in the final state.
def main(skim_dir, output, samples, implicit_mt=False):
    # Set up multi-threading capability of ROOT
    if implicit_mt:
        ROOT.ROOT.EnableImplicitMT()

    # Create output file
    tfile = ROOT.TFile(output, "RECREATE")
    variables = ranges.keys()
    reports = {}

    # Loop through skimmed datasets and produce histograms of variables
    for name, label in samples:
        print(">>> Process skimmed sample {} for process {}".format(name, label))

        # Load skimmed dataset and apply baseline selection
        df = (
            ROOT.ROOT.RDataFrame("Events", "{}/{}Skim.root".format(skim_dir, name))
            .Filter("mt_1<30", "Muon transverse mass cut for W+jets suppression")
            .Filter("iso_1<0.1", "Require isolated muon for signal region")
        )

        # Book histograms for the signal region
        df1 = df.Filter("q_1*q_2<0", "Require opposited charge for signal region")
        df1 = filterGenMatch(df1, label)
        hists = {}
        counts = {}
        for variable in variables:
            hists[variable] = bookHistogram(df1, variable, ranges[variable])
            counts[variable] = bookCounts(df1, variable, ranges[variable])
        report1 = df1.Report()

        # Book histograms for the control region used to estimate the QCD contribution
        df2 = df.Filter("q_1*q_2>0", "Control region for QCD estimation")
        df2 = filterGenMatch(df2, label)
        hists_cr = {}
        counts_cr = {}
        for variable in variables:
            hists_cr[variable] = bookHistogram(df2, variable, ranges[variable])
            counts_cr[variable] = bookCounts(df2, variable, ranges[variable])
        report2 = df2.Report()

        # Write histograms to output file
        for variable in variables:
            writeHistogram(hists[variable], "{}_{}".format(label, variable))
            writeHistogram(counts[variable], "{}_{}_counts".format(label, variable))
        for variable in variables:
            writeHistogram(hists_cr[variable], "{}_{}_cr".format(label, variable))
            writeHistogram(counts_cr[variable], "{}_{}_cr_counts".format(label, variable))

        reports[label] = {"os": _report(report1), "ss": _report(report2)}

    tfile.Close()
    return reports

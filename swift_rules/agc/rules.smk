# The AGC CMS ttbar analysis' own steps after its stage: normalised histograms in the
# AGC's naming, the cabinetry fit, plots, HEPData tables.
#
# Include after swift-rules' generic rules (it uses SR, the workflow plan):
#     from swift_rules.agc import RULES as AGC_RULES
#     include: rules_path("stages.smk")
#     include: str(AGC_RULES)
#     rule all:
#         input: SR.targets(), AGC_TARGETS
# Shell rules only; loads under Snakemake 7.32.4 and 9. Every value reaching a shell
# command goes through params with `:q`.

from swift_rules.agc.config import analysis_settings

AGC = analysis_settings(SR.config)
AGC_STAGE = AGC["stage"]
AGC_RESULTS = SR.results

AGC_TARGETS = [
    f"{AGC_RESULTS}/histograms.root",
    f"{AGC_RESULTS}/provenance.json",
]
if AGC["fit"]:
    AGC_TARGETS += [
        f"{AGC_RESULTS}/fit/fit_results.json",
        f"{AGC_RESULTS}/plots",
    ]
if AGC["hepdata"]:
    AGC_TARGETS.append(f"{AGC_RESULTS}/hepdata")


# The run's crate records these outputs too.
SR.add_targets(AGC_TARGETS)

rule agc_histograms:
    """Normalise (xsec x lumi / events processed) and write the AGC histograms.root."""
    input:
        SR.merged(AGC_STAGE),
    output:
        report(
            AGC_RESULTS + "/histograms.root",
            category="Histograms",
            caption="report/histograms.rst",
        ),
    log:
        AGC_RESULTS + "/logs/histograms.log",
    resources:
        **swift_reana_resources("agc_histograms"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules agc histograms {input:q} --out {output:q} 2> {log:q}"


rule agc_provenance:
    """What produced the histograms: stage variants, code, inputs, events, skipped files."""
    input:
        SR.merged(AGC_STAGE),
    output:
        AGC_RESULTS + "/provenance.json",
    resources:
        **swift_reana_resources("agc_provenance"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules info {input:q} --out {output:q}"


rule agc_fit:
    """The AGC profile-likelihood fit (cabinetry/pyhf): workspace and fit results."""
    input:
        AGC_RESULTS + "/histograms.root",
    output:
        workspace=AGC_RESULTS + "/fit/workspace.json",
        results=report(
            AGC_RESULTS + "/fit/fit_results.json",
            category="Fit",
            caption="report/fit.rst",
        ),
    log:
        AGC_RESULTS + "/logs/fit.log",
    params:
        outdir=AGC_RESULTS + "/fit",
    resources:
        **swift_reana_resources("agc_fit"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules agc fit {input:q} --out {params.outdir:q} 2> {log:q}"


rule agc_plots:
    """Stacked MC with pseudodata, pre- and post-fit, pulls: PNG and PDF."""
    input:
        histograms=AGC_RESULTS + "/histograms.root",
        fit=AGC_RESULTS + "/fit/fit_results.json",
    output:
        report(
            directory(AGC_RESULTS + "/plots"),
            patterns=["{name}.png"],
            category="Plots",
            caption="report/plots.rst",
        ),
    log:
        AGC_RESULTS + "/logs/plots.log",
    params:
        fit=AGC_RESULTS + "/fit",
    # Figures are drawn in parallel processes (matplotlib uses one core): with 2, the
    # plots take 7.4 s instead of 9.8 s on the benchmark data. Scaled down to --cores.
    threads: 2
    resources:
        **swift_reana_resources("agc_plots"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules agc plot {input.histograms:q} --fit {params.fit:q} --out {output:q} "
        "--workers {threads} > {log:q} 2>&1"


rule agc_hepdata:
    """The final histograms as HEPData tables (hepdata_lib)."""
    input:
        AGC_RESULTS + "/histograms.root",
    output:
        directory(AGC_RESULTS + "/hepdata"),
    log:
        AGC_RESULTS + "/logs/hepdata.log",
    resources:
        **swift_reana_resources("agc_hepdata"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules agc hepdata {input:q} --out {output:q} > {log:q} 2>&1"

# The H->tautau analysis' own steps after the generic ones: plot.py's QCD estimate (same-
# sign data minus simulation, x 0.80) and its stacked plots.
#
# Include after swift-rules' generic rules (it uses SR, the workflow plan):
#     from swift_rules.htautau import RULES as HTT_RULES
#     include: rules_path("stages.smk")
#     include: str(HTT_RULES)
#     rule all:
#         input: SR.targets(), HTT_TARGETS
# Shell rules only; loads under Snakemake 7.32.4 and 9. Every value reaching a shell
# command goes through params or `:q`.

from swift_rules.htautau.config import analysis_settings

HTT = analysis_settings(SR.config)
HTT_TARGETS = [SR.results + "/qcd.root"]
if HTT["plots"]:
    HTT_TARGETS.append(SR.results + "/plots")


# The run's crate records these outputs too.
SR.add_targets(HTT_TARGETS)

rule htautau_qcd:
    """The QCD multijet estimate of plot.py from the stage's normalised histograms."""
    input:
        SR.histograms_root(HTT["stage"]),
    output:
        report(SR.results + "/qcd.root", category="Histograms", caption="report/qcd.rst"),
    log:
        SR.results + "/logs/qcd.log",
    params:
        factor=HTT["qcd_scale_factor"],
    resources:
        **swift_reana_resources("htautau_qcd"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules htautau qcd {input:q} --scale-factor {params.factor:q} --out {output:q} "
        "2> {log:q}"


rule htautau_plots:
    """plot.py's stacked plots, one per variable (PNG and PDF)."""
    input:
        SR.results + "/qcd.root",
    output:
        report(
            directory(SR.results + "/plots"),
            patterns=["{name}.png"],
            category="Plots",
            caption="report/plots.rst",
        ),
    log:
        SR.results + "/logs/plots.log",
    # matplotlib draws on one core: the figures are drawn in parallel processes.
    threads: 2
    resources:
        **swift_reana_resources("htautau_plots"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules htautau plot {input:q} --out {output:q} --workers {threads} > {log:q} 2>&1"

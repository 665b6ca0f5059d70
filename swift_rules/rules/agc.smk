# swift-rules: the AGC CMS ttbar analysis steps after the stage: generated input data,
# normalised histograms, the cabinetry fit, plots, HEPData tables.
#
# Include after stages.smk (it uses SR, the workflow plan):
#     include: rules_path("stages.smk")
#     include: rules_path("agc.smk")
#     rule all:
#         input: AGC_TARGETS
# Shell rules only; loads under Snakemake 7.32.4 and 9.

AGC_STAGE = SR.config["analysis"]["stage"]
AGC_RESULTS = SR.results
AGC_GENERATED = SR.generated_files() if SR.config["data"]["source"] == "generated" else {}
AGC_GENERATION = SR.generation if AGC_GENERATED else {}

AGC_TARGETS = [
    f"{AGC_RESULTS}/histograms.root",
    f"{AGC_RESULTS}/provenance.json",
]
if SR.config["analysis"]["fit"]:
    AGC_TARGETS += [
        f"{AGC_RESULTS}/fit/fit_results.json",
        f"{AGC_RESULTS}/plots",
    ]
if SR.config["analysis"]["hepdata"]:
    AGC_TARGETS.append(f"{AGC_RESULTS}/hepdata")
if AGC_GENERATED:
    AGC_TARGETS.append(f"{AGC_GENERATION['directory']}/fileset.json")


if AGC_GENERATED:

    rule agc_generate:
        """Generate one NanoAOD-format file of one AGC sample (deterministic, seeded)."""
        output:
            AGC_GENERATION["directory"] + "/{sample}/{sample}_{index}.root",
        wildcard_constraints:
            index=r"\d{4}",
        params:
            events=lambda w: AGC_GENERATION["events"][w.sample],
            seed=AGC_GENERATION["seed"],
            compression=AGC_GENERATION["compression"],
        log:
            AGC_RESULTS + "/logs/generate/{sample}_{index}.log",
        resources:
            **swift_reana_resources("agc_generate"),
        container:
            SWIFT_CONTAINER
        shell:
            "swift-rules generate --sample {wildcards.sample} --index {wildcards.index} "
            "--events {params.events} --seed {params.seed} "
            "--compression {params.compression} --out {output:q} 2> {log:q}"

    rule agc_fileset:
        """The generated dataset as an AGC-layout fileset JSON."""
        input:
            list(AGC_GENERATED),
        output:
            AGC_GENERATION["directory"] + "/fileset.json",
        resources:
            **swift_reana_resources("agc_fileset"),
        container:
            SWIFT_CONTAINER
        shell:
            "swift-rules fileset {input:q} --out {output:q}"


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
        "swift-rules histograms {input:q} --out {output:q} 2> {log:q}"


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
        "swift-rules info {input:q} > {output:q}.tmp && mv {output:q}.tmp {output:q}"


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
    resources:
        **swift_reana_resources("agc_fit"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules fit {input:q} --out {AGC_RESULTS}/fit 2> {log:q}"


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
    # Figures are drawn in parallel processes (matplotlib uses one core): with 2, the
    # plots take 7.4 s instead of 9.8 s on the benchmark data. Scaled down to --cores.
    threads: 2
    resources:
        **swift_reana_resources("agc_plots"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules plot {input.histograms:q} --fit {AGC_RESULTS}/fit --out {output:q} "
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
        "swift-rules hepdata {input:q} --out {output:q} > {log:q} 2>&1"

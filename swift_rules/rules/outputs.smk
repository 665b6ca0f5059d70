# swift-rules: what every exported stage's histograms become (config `outputs`,
# stages.<name>.export). Included by stages.smk (uses SR). An analysis adds its own
# steps (a data-driven estimate, a fit) as rules of its own beside these, and tells the
# crate of their outputs with SR.add_targets(...).

import snakemake as swift_snakemake  # its version, for the crate


rule swift_export:
    """A stage's histograms, normalised (xsec x luminosity / N for simulation) and grouped,
    in a ROOT file that needs no unpickling to read."""
    input:
        lambda w: SR.sample_outputs(_stage(w)),
    output:
        report(
            SR.results + "/{namespace}/{stagename}/histograms.root",
            category="Histograms",
            subcategory="{namespace}::{stagename}",
            caption="report/export.rst",
        ),
    log:
        SR.results + "/logs/{namespace}/{stagename}/export.log",
    params:
        args=lambda w: SR.export_args(_stage(w)),
    resources:
        **swift_reana_resources("swift_export"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules export {params.args} --out {output:q} -- {input:q} 2> {log:q}"


rule swift_draw:
    """One figure per histogram of a stage: simulation stacked by group, data overlaid
    with a data/simulation ratio."""
    input:
        SR.results + "/{namespace}/{stagename}/histograms.root",
    output:
        report(
            directory(SR.results + "/{namespace}/{stagename}/plots"),
            patterns=["{name}.png"],
            category="Plots",
            subcategory="{namespace}::{stagename}",
            caption="report/draw.rst",
        ),
    log:
        SR.results + "/logs/{namespace}/{stagename}/draw.log",
    params:
        args=SR.draw_args(),
    threads: 2
    resources:
        **swift_reana_resources("swift_draw"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules draw {input:q} --out {output:q} --workers {threads} {params.args} "
        "> {log:q} 2>&1"


if SR.crate():

    rule swift_crate:
        """The run's provenance as a Workflow Run RO-Crate: the workflow and its config, the
        stages that ran, the inputs and every output with its checksum."""
        input:
            lambda w: SR.crate_inputs(),
        output:
            SR.crate(),
        log:
            SR.results + "/logs/crate.log",
        params:
            args=lambda w: SR.crate_args(
                getattr(workflow, "main_snakefile", None) or workflow.snakefile,
                "snakemake " + getattr(swift_snakemake, "__version__", "unknown"),
            ),
        resources:
            **swift_reana_resources("swift_crate"),
        container:
            SWIFT_CONTAINER
        shell:
            "swift-rules crate {params.args} > {log:q} 2>&1"

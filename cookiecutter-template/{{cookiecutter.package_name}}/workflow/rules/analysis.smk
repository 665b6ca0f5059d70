# Step 5: the own steps of {{ cookiecutter.analysis_name }}, after swift-rules' generic ones
# (a data-driven estimate, a fit, a table...). Each is a shell rule that runs a module
# of this analysis' package on generic outputs (SR.histograms_root, SR.merged, ...):
# shell rules run everywhere, REANA included. List their outputs in ANALYSIS_TARGETS: the
# run's provenance crate then records them too.

YIELDS = SR.config["analysis"]["yields"]


rule yields:
    """Each group's yield in a window of one histogram, and data / simulation."""
    input:
        SR.histograms_root("{{ cookiecutter.namespace }}::histograms"),
    output:
        SR.results + "/{{ cookiecutter.namespace }}/yields.json",
    params:
        histogram=YIELDS["histogram"],
        window=" ".join(str(float(edge)) for edge in YIELDS["window"]),
    log:
        SR.results + "/logs/{{ cookiecutter.namespace }}/yields.log",
    container:
        SWIFT_CONTAINER
    shell:
        "python -m {{ cookiecutter.package_name }}.yields {input:q} --histogram {params.histogram:q} "
        "--window {params.window} --out {output:q} 2> {log:q}"


ANALYSIS_TARGETS = [SR.results + "/{{ cookiecutter.namespace }}/yields.json"]
SR.add_targets(ANALYSIS_TARGETS)

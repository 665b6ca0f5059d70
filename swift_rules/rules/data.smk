# swift-rules: where the input files come from. Included by stages.smk (uses SR).
#
# - data.source generated: the registered generator of data.generated writes every
#   file (one job per file, seeded: the same files every time), and the datasets as a
#   coffea fileset (DIRECTORY/fileset.json, with their metadata and event counts).
# - data.remote.stage_in: remote inputs copied to a local folder first.


if SR.generated:

    rule swift_generate:
        """Write one generated input file (deterministic, seeded)."""
        output:
            SR.config["data"]["generated"]["directory"] + "/{dataset}/{dataset}_{index}.root",
        wildcard_constraints:
            index=r"\d{4}",
        params:
            # From the wildcards, not the output: Snakemake records params that need the
            # output as empty, so a new size or seed would not rerun the file.
            args=lambda w: SR.generation_args(SR.generated_path(w.dataset, w.index)),
            code=SR.generator_fingerprint(),
        log:
            SR.results + "/logs/generate/{dataset}_{index}.log",
        resources:
            **swift_reana_resources("swift_generate"),
        container:
            SWIFT_CONTAINER
        shell:
            "swift-rules generate {params.args} --out {output:q} 2> {log:q}"

    rule swift_fileset:
        """The generated datasets as a coffea fileset, with metadata and event counts."""
        input:
            list(SR.generated),
        output:
            SR.generated_fileset(),
        params:
            metadata=SR.generated_metadata_json(),
        log:
            SR.results + "/logs/generate/fileset.log",
        resources:
            **swift_reana_resources("swift_fileset"),
        container:
            SWIFT_CONTAINER
        shell:
            "swift-rules fileset --metadata {params.metadata:q} --out {output:q} "
            "-- {input:q} 2> {log:q}"


if SR.stage_in_dir:

    rule swift_stage_in:
        """Copy one remote input to the folder config data.remote.stage_in (sites without
        a cache): the copy is an output like any other, made once and reused."""
        output:
            SR.stage_in_dir + "/{staged}",
        log:
            SR.results + "/logs/stage_in/{staged}.log",
        params:
            url=lambda w: SR.staged_url(SR.stage_in_dir + "/" + w.staged),
        resources:
            **swift_reana_resources("swift_stage_in"),
        container:
            SWIFT_CONTAINER
        shell:
            "swift-rules stage-in {params.url:q} --out {output:q} 2> {log:q}"

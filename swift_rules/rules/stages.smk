# swift-rules: generic rules that run registered stages over the datasets' file groups,
# merge their results, export their histograms and draw them. They know no analysis.
#
# Use from a workflow (no copying):
#     from swift_rules.workflow import rules_path
#     configfile: "config/config.yaml"
#     include: rules_path("stages.smk")
#     rule all:
#         input: SR.targets()
# or with Snakemake's `module` (see docs/stages.md). Every stage listed under `stages:`
# in the config runs over every dataset; targets (SR.targets() has them all):
#     SR.merged("ns::stage")           -> results/ns/stage/merged.pkl
#     SR.histograms_root("ns::stage")  -> results/ns/stage/histograms.root
#     SR.plots_dir("ns::stage")        -> results/ns/stage/plots/
#
# Shell rules only (REANA's Snakemake engine runs nothing else); loads under
# Snakemake 7.32.4 and 9. Every value that reaches a shell command is quoted (`:q`).

import os

# The one module of ours the rule files import: light, and Python 3.8 (tests/test_layers.py).
from swift_rules.workflow import (
    EXECUTOR_ENV,
    Plan,
    batch_resources,
    guard_htcondor_executor_startup,
    guard_slurm_executor,
    offer_warm_start,
)

guard_htcondor_executor_startup()
guard_slurm_executor()

# Plan validates the config against swift-rules' JSON schema before anything runs
# (errors name the key and the value) and fills in the defaults.
SR = Plan(config)
# How stage jobs execute (local, a scheduler address...) reaches them through the
# environment, not params: changing it reruns nothing. Every Snakemake process that
# runs jobs (also on a cluster node) parses this file and sets it again.
os.environ[EXECUTOR_ENV] = SR.executor_json()
# Warm start (swift_rules/warmstart/): the jobs Snakemake runs on this machine fork
# from one process that has coffea & co. imported, instead of importing them each time.
offer_warm_start(workflow, SR.config["executor"]["warm_start"])

# REANA (docs/reana.md): the image every rule runs in, and each rule's REANA job
# resources from config `reana` (its defaults, then the rule's entry under `rules`).
SWIFT_CONTAINER = SR.config["reana"]["container"]


def swift_reana_resources(rule_name):
    reana = SR.config["reana"]
    settings = {key: reana[key] for key in ("kubernetes_memory_limit", "compute_backend")}
    settings.update(reana["rules"].get(rule_name, {}))
    return {key: value for key, value in settings.items() if value is not None}


wildcard_constraints:
    namespace=r"[A-Za-z_][\w.-]*",
    stagename=r"[A-Za-z_][\w.-]*",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    group=r"\d{4}",


def _stage(wildcards):
    return SR.stage_name(wildcards.namespace, wildcards.stagename)


def _stage_resources(rule_name):
    return dict(
        mem_mb=lambda w: SR.settings(_stage(w))["mem_mb"],
        runtime=lambda w: SR.settings(_stage(w))["runtime"],
        gpu=lambda w: SR.settings(_stage(w))["gpu"],
        # The same requests in the names of the batch executor plugins (profiles/).
        **batch_resources(lambda w: SR.settings(_stage(w))),
        **swift_reana_resources(rule_name),
    )


include: "data.smk"


rule swift_process:
    """Run one stage over one group of files of one dataset: one cached partial output."""
    input:
        lambda w: SR.local_inputs(w.dataset, w.group, _stage(w)),
    output:
        SR.results + "/{namespace}/{stagename}/partial/{dataset}/group{group}.pkl",
    log:
        stderr=SR.results + "/logs/{namespace}/{stagename}/{dataset}/group{group}.log",
        # How and where the job ran: kept out of the result, whose bytes must not
        # depend on the executor or the host.
        run=SR.results + "/logs/{namespace}/{stagename}/{dataset}/group{group}.run.json",
    params:
        # Snakemake reruns a job when its params change: the code hash and the
        # stage's settings, registration and dataset metadata in args make a change
        # rerun exactly the jobs it affects.
        code=lambda w: SR.code_fingerprint(_stage(w)),
        args=lambda w: SR.run_args(_stage(w), w.dataset, w.group),
        stage=_stage,
    threads: lambda w: SR.settings(_stage(w))["threads"]
    resources:
        **_stage_resources("swift_process"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules run {params.stage:q} --out {output:q} --workers {threads} "
        "--run-record {log.run:q} {params.args} 2> {log.stderr:q}"


rule swift_skim:
    """Run a skim stage over one group of files: its selected events as a Parquet file
    (the cached input of the stages that read it) and its record and other outputs."""
    input:
        lambda w: SR.local_inputs(w.dataset, w.group, _stage(w)),
    output:
        record=SR.results + "/{namespace}/{stagename}/skims/{dataset}/group{group}.pkl",
        skim=SR.results + "/{namespace}/{stagename}/skims/{dataset}/group{group}.parquet",
    log:
        stderr=SR.results + "/logs/{namespace}/{stagename}/{dataset}/group{group}.log",
        run=SR.results + "/logs/{namespace}/{stagename}/{dataset}/group{group}.run.json",
    params:
        code=lambda w: SR.code_fingerprint(_stage(w)),
        args=lambda w: SR.run_args(_stage(w), w.dataset, w.group),
        stage=_stage,
    threads: lambda w: SR.settings(_stage(w))["threads"]
    resources:
        **_stage_resources("swift_skim"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules run {params.stage:q} --out {output.record:q} --skim-out {output.skim:q} "
        "--workers {threads} --run-record {log.run:q} {params.args} 2> {log.stderr:q}"


rule swift_merge_sample:
    """Sum the partial outputs of one dataset, in group order."""
    input:
        lambda w: SR.partials(_stage(w), w.dataset),
    output:
        SR.results + "/{namespace}/{stagename}/samples/{dataset}.pkl",
    log:
        SR.results + "/logs/{namespace}/{stagename}/{dataset}/merge.log",
    resources:
        **swift_reana_resources("swift_merge_sample"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules merge {input:q} --out {output:q} 2> {log:q}"


rule swift_merge:
    """Sum the per-dataset outputs of one stage, in dataset order."""
    input:
        lambda w: SR.sample_outputs(_stage(w)),
    output:
        SR.results + "/{namespace}/{stagename}/merged.pkl",
    log:
        SR.results + "/logs/{namespace}/{stagename}/merge.log",
    resources:
        **swift_reana_resources("swift_merge"),
    container:
        SWIFT_CONTAINER
    shell:
        "swift-rules merge {input:q} --out {output:q} 2> {log:q}"


include: "outputs.smk"

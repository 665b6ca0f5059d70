"""Run a REANA workspace the way REANA 0.9's Snakemake engine does, with local jobs.

    .venv-snakemake7/bin/python environment/reana_engine.py WORKSPACE [--cores N]

WORKSPACE holds what `reana-client upload` would send (the `inputs` of its reana.yaml)
and reana.yaml itself. Like reana-workflow-engine-snakemake 0.9, this calls Snakemake
7.32.4's Python API on the workflow file of reana.yaml, with the workspace as working
directory, the file named by `inputs.parameters.input` loaded as the config, printed
shell commands and no temp() removal; then it writes the HTML report (report.html).
The one difference: the engine hands each job's shell command to REANA's job
controller (a pod of the rule's container image); here it runs on this machine, in
this environment, which holds the image's software (swift-rules and its dependencies).
"""

from __future__ import annotations

import argparse
import os
import sys

import yaml
from snakemake import snakemake


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)

    workspace = os.path.abspath(args.workspace)
    with open(os.path.join(workspace, "reana.yaml")) as f:
        spec = yaml.safe_load(f)
    if spec["workflow"]["type"] != "snakemake":
        raise SystemExit(f"reana.yaml: workflow type {spec['workflow']['type']!r}, not snakemake")
    snakefile = os.path.join(workspace, spec["workflow"]["file"])
    input_file = spec.get("inputs", {}).get("parameters", {}).get("input")
    parameters = {}
    if input_file:
        with open(os.path.join(workspace, input_file)) as f:
            parameters = yaml.safe_load(f) or {}

    ok = snakemake(
        snakefile,
        printshellcmds=True,
        config=parameters,
        workdir=workspace,
        notemp=True,
        cores=args.cores,
    )
    # The engine's second call: the HTML report, from the metadata of the run.
    report = ok and not args.no_report
    if report and not snakemake(
        snakefile, config=parameters, workdir=workspace, report="report.html"
    ):
        print("error generating the workflow's HTML report", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

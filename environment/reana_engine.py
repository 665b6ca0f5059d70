"""Run a REANA workspace the way REANA's Snakemake engine does, with local jobs.

    .venv-snakemake7/bin/python environment/reana_engine.py WORKSPACE [--cores N]
    .venv-snakemake8/bin/python environment/reana_engine.py WORKSPACE [--cores N]

WORKSPACE holds what `reana-client upload` would send (the `inputs` of its reana.yaml)
and reana.yaml itself. The engine is that of the Snakemake in this environment:

- Snakemake 7 (REANA 0.9, reana-workflow-engine-snakemake 0.9): Snakemake's `snakemake()`
  function on the workflow file of reana.yaml, with the workspace as working directory,
  the file named by `inputs.parameters.input` loaded as the config, printed shell
  commands and no temp() removal; then a second call writes the HTML report.
- Snakemake 8 and later (REANA 0.95): Snakemake's `SnakemakeApi`, with the same
  workflow file, working directory and config (ConfigSettings), printed shell commands,
  default DAG settings (temp() files removed); then the DAG's `create_report` with the
  html reporter.

The one difference: the engine hands each job's shell command to REANA's job controller
(a pod of the rule's container image; under Snakemake 8 through its own executor
plugin, which counts as remote execution); here Snakemake's local executor runs it on
this machine, in this environment, which holds the image's software (swift-rules and
its dependencies).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import snakemake
import yaml

REPORT = "report.html"


def run_snakemake7(snakefile: str, workspace: str, parameters: dict, cores: int,
                   report: bool) -> bool:  # fmt: skip
    from snakemake import snakemake as run

    ok = run(
        snakefile,
        printshellcmds=True,
        config=parameters,
        workdir=workspace,
        notemp=True,
        cores=cores,
    )
    # The engine's second call: the HTML report, from the metadata of the run.
    if ok and report and not run(snakefile, config=parameters, workdir=workspace, report=REPORT):
        print("error generating the workflow's HTML report", file=sys.stderr)
        return False
    return bool(ok)


def run_snakemake8(snakefile: str, workspace: str, parameters: dict, cores: int,
                   report: bool) -> bool:  # fmt: skip
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        DeploymentSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
        WorkflowSettings,
    )
    from snakemake_interface_common.exceptions import WorkflowError
    from snakemake_interface_report_plugins.registry import ReportPluginRegistry

    with SnakemakeApi(OutputSettings(printshellcmds=True)) as api:
        try:
            workflow_api = api.workflow(
                resource_settings=ResourceSettings(cores=cores),
                config_settings=ConfigSettings(config=parameters),
                storage_settings=StorageSettings(),
                storage_provider_settings={},
                workflow_settings=WorkflowSettings(),
                deployment_settings=DeploymentSettings(),
                snakefile=Path(snakefile),
                workdir=Path(workspace),
            )
            dag_api = workflow_api.dag(dag_settings=DAGSettings())
            dag_api.execute_workflow(executor="local")
            if report:
                plugin = ReportPluginRegistry().get_plugin("html")
                settings = plugin.settings_cls(path=Path(workspace) / REPORT)
                dag_api.create_report(reporter="html", report_settings=settings)
        except WorkflowError as err:
            api.print_exception(err)
            return False
    return True


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

    major = int(snakemake.__version__.split(".")[0])
    engine = run_snakemake7 if major < 8 else run_snakemake8
    ok = engine(snakefile, workspace, parameters, args.cores, not args.no_report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Commands about a whole run: its provenance crate, checking a results folder against it,
and rerunning the workflow from it."""

from __future__ import annotations

import logging

from swift_rules.cli import parse_json

log = logging.getLogger(__name__)


def cmd_crate(args) -> int:
    from swift_rules.crate import write_crate

    name, _, version = args.engine.partition(" ")
    path = write_crate(args.results, workflow_file=args.workflow, config=args.config,
                       engine=(name, version or "unknown"))  # fmt: skip
    log.info(f"the run's crate: {path}")
    return 0


def _report(found: dict) -> int:
    bad = found["missing"] or found["different"]
    for kind in ("missing", "different", "extra"):
        for path in found[kind]:
            print(f"{kind}: {path}")
    return 1 if bad else 0


def cmd_verify(args) -> int:
    from swift_rules.crate import read_crate, recorded_checksums, verify

    found = verify(args.results)
    n = len(recorded_checksums(read_crate(args.results)))
    status = _report(found)
    print(
        f"{args.results}: {n - len(found['missing']) - len(found['different'])} of {n} "
        f"recorded outputs present and identical" + ("" if status else "; all reproduce")
    )
    return status


def cmd_rerun(args) -> int:
    from swift_rules.rerun import rerun

    found, outdir = rerun(args.results, workdir=args.directory, cores=args.cores,
                          snakemake=args.snakemake)  # fmt: skip
    status = _report(found)
    print(f"rerun in {outdir}: " + ("every recorded output reproduced" if not status else
                                    "some outputs did not reproduce (above)"))  # fmt: skip
    return status


def add_commands(add) -> None:
    sp = add("crate", cmd_crate, "Write a run's Workflow Run RO-Crate (the workflow's last job).")
    sp.add_argument("--results", required=True)
    sp.add_argument("--workflow", required=True, help="the workflow's Snakefile")
    sp.add_argument("--engine", default="snakemake unknown", help='"NAME VERSION"')
    sp.add_argument("--config", type=parse_json, required=True, metavar="JSON",
                    help="the workflow's validated config")  # fmt: skip

    sp = add("verify", cmd_verify,
             "Check a results folder against its crate: every recorded output present, every "
             "checksum equal; say what differs (exit status 1).")  # fmt: skip
    sp.add_argument("results", help="the results folder (with ro-crate-metadata.json)")

    sp = add("rerun", cmd_rerun,
             "Rerun a workflow from its crate's config into a fresh folder and compare every "
             "output with the recorded one.")  # fmt: skip
    sp.add_argument("results", help="the results folder (with ro-crate-metadata.json)")
    sp.add_argument("--directory", help="where to rerun (default: a new folder beside it)")
    sp.add_argument("--cores", type=int, default=None, help="Snakemake's --cores (default all)")
    sp.add_argument("--snakemake", default="snakemake", help="the snakemake command to use")

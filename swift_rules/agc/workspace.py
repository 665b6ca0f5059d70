"""The AGC's pyhf workspace, built by cabinetry in a fit directory.

:func:`build_workspace` fills in the cabinetry configuration shipped with the package
(``cabinetry_config.yml``: samples ttbar, W+jets and the single tops, pseudodata as
data, POI ``ttbar_norm``, the AGC's systematic uncertainties) for one fit directory,
writes the fit templates (:mod:`swift_rules.agc.templates`), lets cabinetry collect
them and build the workspace, checks it (:mod:`swift_rules.agc.template_checks`) and
writes, in the fit directory: ``fit_templates.root``, ``templates/*.npz`` (cabinetry's
template cache), ``cabinetry_config.yml`` (the configuration used),
``template_checks.json`` and ``workspace.json`` (the model that is fitted, after the
checks). The fit itself is :mod:`swift_rules.agc.fit`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from swift_rules.agc.template_checks import check_templates, template_check_settings
from swift_rules.agc.templates import write_fit_templates
from swift_rules.atomic import write_text

log = logging.getLogger(__name__)

# The files of a fit directory (and fit_results.json: swift_rules.agc.fit).
CONFIG_NAME = "cabinetry_config.yml"
WORKSPACE_NAME = "workspace.json"
TEMPLATE_CHECKS_NAME = "template_checks.json"
FIT_TEMPLATES_NAME = "fit_templates.root"
TEMPLATE_FOLDER = "templates"


def load_config_template() -> dict[str, Any]:
    """The AGC cabinetry configuration shipped with the package (paths not filled in)."""
    text = resources.files("swift_rules.agc").joinpath(CONFIG_NAME).read_text()
    return yaml.safe_load(text)


def make_config(fit_dir: str | os.PathLike) -> dict[str, Any]:
    """The cabinetry configuration of a fit directory (templates read from it)."""
    import cabinetry

    fit_dir = Path(fit_dir)
    config = load_config_template()
    general = config["General"]
    # InputPath is "FILE:{RegionPath}_{SamplePath}{VariationPath}": point FILE at the run's.
    _, _, histo_pattern = general["InputPath"].partition(":")
    general["InputPath"] = f"{fit_dir / FIT_TEMPLATES_NAME}:{histo_pattern}"
    general["HistogramFolder"] = str(fit_dir / TEMPLATE_FOLDER)
    cabinetry.configuration.validate(config)
    return config


def required_keys(config: dict[str, Any]) -> list[str]:
    """The histogram keys the fit of ``config`` reads (data, nominal and variations)."""
    import cabinetry
    from cabinetry.templates.collector import _histo_path

    general = config["General"]
    keys: list[str] = []

    def collect(region, sample, systematic, template):
        path = _histo_path(
            general["InputPath"],
            general.get("VariationPath", ""),
            region,
            sample,
            systematic,
            template,
        )
        key = path.rpartition(":")[2]
        if key not in keys:
            keys.append(key)

    cabinetry.route.apply_to_all_templates(config, collect)
    return keys


def dump_json(obj: Any) -> str:
    """``obj`` as the fit directory's JSON files are written: sorted keys, no NaN."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def workspace_digest(workspace: dict) -> str:
    """SHA-256 of ``workspace`` as :func:`dump_json` writes it."""
    return hashlib.sha256(dump_json(workspace).encode()).hexdigest()


def build_workspace(histograms_root: str | os.PathLike, outdir: str | os.PathLike) -> dict:
    """Build the AGC's pyhf workspace from ``histograms_root``; return it.

    Writes ``outdir/fit_templates.root`` (the rebinned templates),
    ``outdir/templates/*.npz`` (cabinetry's template cache),
    ``outdir/cabinetry_config.yml`` (the configuration used),
    ``outdir/template_checks.json`` (:func:`check_templates`' records, with the digest
    of the workspace they belong to) and ``outdir/workspace.json`` (after the checks).
    """
    import cabinetry

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    config = make_config(outdir)
    write_fit_templates(histograms_root, outdir / FIT_TEMPLATES_NAME, required_keys(config))

    # cabinetry writes its template cache non-atomically: collect into a temporary
    # folder, then move each file into place.
    template_dir = outdir / TEMPLATE_FOLDER
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{TEMPLATE_FOLDER}-", dir=outdir))
    try:
        tmp_config = copy.deepcopy(config)
        tmp_config["General"]["HistogramFolder"] = str(tmp_dir)
        cabinetry.templates.collect(tmp_config, method="uproot")
        workspace = cabinetry.workspace.build(tmp_config)
        workspace = json.loads(json.dumps(workspace))  # plain Python types only
        workspace, checks = check_templates(workspace, tmp_config, tmp_dir)
        cabinetry.workspace.validate(workspace)
        template_dir.mkdir(exist_ok=True)
        for stale in template_dir.glob("*.npz"):
            stale.unlink()
        for npz in sorted(tmp_dir.glob("*.npz")):
            os.replace(npz, template_dir / npz.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)

    write_text(outdir / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))
    write_text(
        outdir / TEMPLATE_CHECKS_NAME,
        dump_json(
            {
                "workspace_sha256": workspace_digest(workspace),
                "settings": template_check_settings(),
                "checks": checks,
            }
        ),
    )
    write_text(outdir / WORKSPACE_NAME, dump_json(workspace))
    pruned = [c for c in checks if any(a.startswith("shape pruned") for a in c["actions"])]
    if pruned:
        log.info(
            "template checks: %d of %d shape variations pruned as MC noise (see %s)",
            len(pruned),
            len(checks),
            outdir / TEMPLATE_CHECKS_NAME,
        )
    return workspace


def template_checks_for(workspace: dict, outdir: Path) -> dict | None:
    """The template checks of ``outdir`` if they belong to ``workspace``, else None."""
    path = outdir / TEMPLATE_CHECKS_NAME
    if not path.exists():
        return None
    checks = json.loads(path.read_text())
    if checks.get("workspace_sha256") != workspace_digest(workspace):
        log.warning("%s belongs to another workspace: not recorded in the fit results", path)
        return None
    return checks

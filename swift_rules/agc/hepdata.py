"""The AGC's final histograms as a HEPData submission (hepdata_lib, no ROOT needed).

One table per region: the observable's bins as independent variable; as dependent
variables each process's nominal yield (with its MC statistical uncertainty) and the
pseudodata. hepdata_lib's ``Submission.create_files`` writes its tarball into the
current directory, so the files are written here the same way (submission.yaml, one
YAML file per table), validated with the HEPData validator, then moved one by one
into the output directory, with a reproducible ``submission.tar.gz`` beside them.
"""

from __future__ import annotations

import gzip
import io
import itertools
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import yaml

from swift_rules.agc.histograms import PSEUDODATA, histogram_key, read_histograms_root
from swift_rules.agc.samples import LUMINOSITY_PB, PROCESSES, REGIONS
from swift_rules.atomic import atomic_path, write_bytes

REACTION = "P P --> TOP TOPBAR X"
SQRT_S_TEV = 13
LUMI_FB = LUMINOSITY_PB / 1000.0

OBSERVABLES = {
    "4j1b": ("$H_{T}$", "4j1b region: at least four jets, exactly one b-tagged"),
    "4j2b": ("$m_{bjj}$", "4j2b region: at least four jets, at least two b-tagged"),
}
PROCESS_NAMES = {
    "ttbar": r"$t\bar{t}$",
    "wjets": "W+jets",
    "single_top_s_chan": "single top, s-channel",
    "single_top_t_chan": "single top, t-channel",
    "single_top_tW": "single top, tW",
}
TARBALL = "submission.tar.gz"


def table_file_name(region: str) -> str:
    return f"histograms_{region.lower()}.yaml"


def _qualify(var, region: str) -> None:
    var.add_qualifier("REACTION", REACTION)
    var.add_qualifier("SQRT(S)", SQRT_S_TEV, "TeV")
    var.add_qualifier("LUMINOSITY", round(LUMI_FB, 3), "fb$^{-1}$")
    var.add_qualifier("REGION", region)


def make_submission(histograms_root: str | os.PathLike):
    """The ``hepdata_lib.Submission`` of the histograms of ``histograms_root``."""
    from hepdata_lib import Submission, Table, Uncertainty, Variable

    hists = read_histograms_root(histograms_root)
    submission = Submission()
    submission.comment = (
        "IRIS-HEP Analysis Grand Challenge (AGC) CMS ttbar analysis on 2015 CMS Open Data "
        "(13 TeV, 3.378 fb$^{-1}$): observable distributions of the simulated processes and "
        "the pseudodata, nominal predictions with MC statistical uncertainties."
    )
    regions = [r for r in REGIONS if any(k.startswith(f"{r}_") for k in hists)]
    if not regions:
        raise ValueError(f"{histograms_root} holds no histogram of the regions {REGIONS}")
    for region in regions:
        observable, region_text = OBSERVABLES.get(region, ("observable", f"{region} region"))
        table = Table(f"Histograms {region}")
        table.description = (
            f"Distribution of {observable} in the {region_text}: nominal yield of each "
            "simulated process (uncertainty: MC statistics) and pseudodata "
            "((ttbar ME variation + ttbar PS variation) / 2 + W+jets)."
        )
        table.location = f"histograms.root, keys {region}_*"
        table.keywords["observables"] = ["N"]
        table.keywords["reactions"] = [REACTION]
        table.keywords["cmenergies"] = [SQRT_S_TEV * 1000]
        table.keywords["phrases"] = ["Top", "Quark", "Cross Section", "Proton-Proton Scattering"]

        edges = None
        columns = []
        for process in PROCESSES:
            key = histogram_key(region, process)
            if key in hists:
                columns.append((process, PROCESS_NAMES.get(process, process), key))
        data_key = f"{region}_{PSEUDODATA}"
        if data_key in hists:
            columns.append((PSEUDODATA, "Pseudodata", data_key))
        for _, _, key in columns:
            edges = hists[key][2]
            break
        if edges is None:
            continue

        x = Variable(observable, is_independent=True, is_binned=True, units="GeV")
        x.values = [(float(lo), float(hi)) for lo, hi in itertools.pairwise(edges)]
        table.add_variable(x)
        for name, label, key in columns:
            values, variances, _ = hists[key]
            y = Variable(
                f"Events ({label})",
                is_independent=False,
                is_binned=False,
                units="",
                zero_uncertainties_warning=False,
            )
            y.values = [float(v) for v in values]
            _qualify(y, region)
            y.add_qualifier("PROCESS", "pseudodata" if name == PSEUDODATA else name)
            if name != PSEUDODATA:
                unc = Uncertainty("MC stat.", is_symmetric=True)
                unc.values = [float(u) for u in np.sqrt(np.clip(variances, 0, None))]
                y.add_uncertainty(unc)
            table.add_variable(y)
        submission.add_table(table)
    return submission


def _write_files(submission, outdir: Path) -> None:
    """``Submission.create_files`` without the tarball it writes to the working directory."""
    head = {"data_license": submission.get_license(), "comment": submission.comment}
    if submission.additional_resources:
        head["additional_resources"] = submission.additional_resources
    with open(outdir / "submission.yaml", "w", encoding="utf-8") as fh:
        yaml.dump(head, fh, default_flow_style=False, explicit_start=True)
    for table in submission.tables:
        table.write_output(str(outdir))


def _validate(directory: Path) -> None:
    from hepdata_validator.full_submission_validator import FullSubmissionValidator

    validator = FullSubmissionValidator()
    if not validator.validate(directory=str(directory)):
        messages = []
        for file_name, file_messages in validator.get_messages().items():
            for message in file_messages:
                messages.append(f"{Path(file_name).name}: {message.message}")
        raise ValueError("invalid HEPData submission:\n  " + "\n  ".join(messages))


def _tarball(files: list[Path]) -> bytes:
    """A reproducible tar.gz of ``files`` (fixed mtimes, owners and modes, sorted)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files, key=lambda p: p.name):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_hepdata(histograms_root: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """Write the HEPData submission of ``histograms_root`` to ``outdir``.

    Files: ``submission.yaml``, ``histograms_{region}.yaml`` per region and
    ``submission.tar.gz`` (all of them, ready for upload); YAML files of an earlier
    submission left in ``outdir`` are removed. Returns the path of ``submission.yaml``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    submission = make_submission(histograms_root)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".tmp-hepdata-", dir=outdir))
    try:
        _write_files(submission, tmp_dir)
        _validate(tmp_dir)
        files = sorted(tmp_dir.glob("*.yaml"))
        names = {f.name for f in files}
        for stale in outdir.glob("*.yaml"):
            if stale.name not in names:
                stale.unlink()
        tarball = _tarball(files)
        for f in files:
            with atomic_path(outdir / f.name) as tmp:
                shutil.copyfile(f, tmp)
        write_bytes(outdir / TARBALL, tarball)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return outdir / "submission.yaml"

"""Helpers shared by the tests (imported as ``helpers``; fixtures stay in conftest, the
fakes of other machines and services in ``fakes/``). Test files import from here, never
from conftest or from each other."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NANOAOD = SHARED / "data" / "nanoaod"

# Small enough for CI, large enough that every region and sample is populated.
TINY_EVENTS = {"ttbar__nominal": 4000, "wjets__nominal": 4000}
TINY_DEFAULT_EVENTS = 1500


def tiny_events(sample: str) -> int:
    return TINY_EVENTS.get(sample, TINY_DEFAULT_EVENTS)


def nanoaod_file(name: str) -> Path:
    path = NANOAOD / name
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is only beside the developers' checkout)")
    return path


def unavailable(message: str):
    """What a test needs is not here (a batch system, a server): it skips on a
    developer's machine, and fails in CI, which provides everything (.ci/run)."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_cli(*args: str, cwd=None, check=True, env=None) -> subprocess.CompletedProcess:
    """Run ``swift-rules ARGS`` the way the rules do, in a subprocess."""
    cmd = [sys.executable, "-m", "swift_rules", *args]
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def ctrl_c_as_at_a_terminal() -> None:
    """(A ``preexec_fn``.) Ctrl-C (SIGINT) at its default in the child, as under a terminal:
    a shell that starts a command in the background (CI's ``nohup ... &``) leaves SIGINT
    ignored, every process under it inherits that, and a Ctrl-C test would then send its
    Snakemake a signal it ignores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snakemake_exe() -> str:
    exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    if not Path(exe).exists():
        pytest.skip("snakemake is not installed")
    return exe


# What a config needs to plan the AGC on generated data (the workflow's own config has
# the same: config/config.yaml).
AGC_BASE = {
    "registries": ["swift_rules.agc"],
    "data": {"source": "generated", "generated": {"generator": "agc::nanoaod"}},
    "outputs": {"luminosity": 3378.0},
}


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, mapping by mapping."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def agc_config(**sections) -> dict:
    """A config for the AGC on generated data, with ``sections`` merged in."""
    return merge(AGC_BASE, sections)


# The reference workflow (tiny preset, one file a sample and a group) that the batch
# backends' profile runs and their local reference runs share (tests/batch/).
PROFILE_CONFIG = agc_config(
    results="results",
    data={
        "generated": {"preset": "tiny", "events_per_file": 500, "files_per_sample": 1},
        "files_per_group": 1,
    },
    stages={"agc::ttbar": {"chunksize": 200, "mem_mb": 1500, "runtime": 7,
                           "options": {"btag_threshold": 0.5}}},
    # No plots, no crate: each would be one more round of batch jobs (tests/test_crate.py
    # checks the crate).
    outputs={"plots": {"enabled": False}, "crate": False},
    analysis={"fit": False, "hepdata": False},
)  # fmt: skip


def coffea_sample(name: str):
    """A real NanoAOD test file from coffea's source distribution on PyPI (the locked
    version), downloaded once into .cache/coffea-samples/. Skips when PyPI is out of
    reach."""
    import tarfile

    repo = REPO
    version = next(
        line.split("==")[1].strip()
        for line in (repo / "environment/requirements.lock").read_text().splitlines()
        if line.startswith("coffea==")
    )
    cache = repo / ".cache" / "coffea-samples" / version
    target = cache / name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"coffea-{version}.tar.gz"
    if not sdist.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"coffea=={version}", "-d", str(cache), "-q"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0 or not sdist.exists():
            pytest.skip(
                f"cannot download coffea {version}'s sources from PyPI: {proc.stderr[-300:]}"
            )
    with tarfile.open(sdist) as tar:
        member = tar.getmember(f"coffea-{version}/tests/samples/{name}")
        data = tar.extractfile(member).read()
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


# --- the reference workflow on this machine ------------------------------------------------


def snakemake(
    workdir: Path, *args: str, check=True, env=None, snakefile=None, **kwargs
) -> subprocess.CompletedProcess:
    if snakefile is None:
        snakefile = workdir / "Snakefile"
    if not snakefile.exists():
        snakefile = REPO / "workflow" / "Snakefile"
    cmd = [
        snakemake_exe(), "--profile", str(REPO / "profiles" / "local"), "--snakefile",
        str(snakefile), "--directory", str(workdir), "--cores", "2", *args,
    ]  # fmt: skip
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = f"{workdir}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *targets: str, snakefile=None) -> dict[str, int]:
    """Rule -> number of jobs a dry run would run (empty: nothing to do)."""
    proc = snakemake(workdir, "--dry-run", *targets, snakefile=snakefile)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
        elif jobs and line.strip().startswith("total"):
            break
    return jobs


def stage_args(path: Path, out: str, executor: dict, workers: int = 2) -> list[str]:
    """``swift-rules`` arguments that run agc::ttbar over ``path``'s generated ttbar files
    on ``executor`` (the backend tests' stage on Dask workers), writing ``out``."""
    import json

    files = sorted(str(p) for p in (path / "data/generated/ttbar__nominal").glob("*.root"))
    return [
        "run", "agc::ttbar", "--sample", "ttbar__nominal", "--files", *files, "--out", out,
        "--workers", str(workers), "--no-progress",
        "--settings", json.dumps({"chunksize": 100, "options": {"btag_threshold": 0.5}}),
        "--executor", json.dumps(executor),
    ]  # fmt: skip


@contextlib.contextmanager
def broker_serving(token: Path, log: Path):
    """``swift-rules broker serve`` on 127.0.0.1 with ``token``, logging to ``log``: its
    address, HOST:PORT; stopped afterwards."""
    import time

    broker = subprocess.Popen(
        [sys.executable, "-m", "swift_rules.cli", "broker", "serve", "--host", "127.0.0.1",
         "--port", "0", "--token-file", str(token)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline, match = time.monotonic() + 30, None
        while not match:
            assert time.monotonic() < deadline and broker.poll() is None, log.read_text()
            match = re.search(r"broker listening on \S+:(\d+)", log.read_text())
            time.sleep(0.2)
        yield f"127.0.0.1:{match.group(1)}"
    finally:
        broker.terminate()
        broker.wait(15)


# --- comparing results --------------------------------------------------------------------


def histograms(path: Path) -> dict:
    """{name: (values, variances)} of every histogram of a ROOT file, flow bins included."""
    import uproot

    with uproot.open(path) as f:
        return {
            k.split(";")[0]: (f[k].values(flow=True), f[k].variances(flow=True)) for k in f.keys()
        }


def load_result(path: Path):
    """swift_rules.results.load_result, for results the tests' own batch jobs wrote as
    the pool's job user: load_result reads only its user's files (a result is code to
    whoever loads it), so the tests, as root, take those files over first."""
    from swift_rules import results

    path = Path(path)
    if os.geteuid() == 0 and path.stat().st_uid != 0:
        os.chown(path, 0, -1)
    return results.load_result(path)


def flat_output(path: Path) -> dict:
    """Every number of a result file's output: hist values and variances, counts."""
    import hist
    import numpy as np

    out = {}

    def walk(obj, prefix):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}/{k}")
        elif isinstance(obj, hist.Hist):
            out[prefix + ":values"] = obj.values(flow=True)
            if obj.variances(flow=True) is not None:
                out[prefix + ":variances"] = obj.variances(flow=True)
        else:
            out[prefix] = np.asarray(obj)

    walk(load_result(path)[0], "")
    return out


def assert_bitwise_equal(a: dict, b: dict) -> None:
    """Two {name: tuple of arrays} have the same names and the same bits."""
    import numpy as np

    assert a.keys() == b.keys()
    different = [k for k in a if not all(np.array_equal(x, y) for x, y in zip(a[k], b[k]))]
    assert not different, f"not bit-identical: {different[:5]}"


def assert_same_result(a: Path, b: Path) -> None:
    """Two result files' outputs are the same, bit for bit."""
    x, y = flat_output(a), flat_output(b)
    assert_bitwise_equal({k: (v,) for k, v in x.items()}, {k: (v,) for k, v in y.items()})


# --- handmade AGC events with known answers ------------------------------------------------

LEPTON = {"phi": 0.0, "mass": 0.0, "charge": -1}
GOOD_E = {**LEPTON, "pt": 40.0, "eta": 0.5, "cutBased": 4, "sip3d": 1.0}
GOOD_MU = {**LEPTON, "pt": 40.0, "eta": 0.5, "tightId": True, "sip3d": 1.0, "pfRelIso04_all": 0.05}


def jet(pt, eta=0.0, phi=0.0, mass=10.0, btag=0.1, jet_id=6):
    return {"pt": pt, "eta": eta, "phi": phi, "mass": mass, "btagCSVV2": btag, "jetId": jet_id}


# Each event: (electrons, muons, jets, expected region, expected observable or None)
FOUR_JETS_1B = [jet(100, btag=0.9), jet(80, phi=1), jet(60, phi=2), jet(40, phi=3)]
TWO_B = [
    jet(120, btag=0.9, phi=0.1),
    jet(90, phi=1.5),
    jet(70, btag=0.8, phi=3.0),
    jet(50, phi=-1.5),
    jet(35, eta=1.0, phi=-0.5),
]
EVENTS = [
    ([GOOD_E], [], FOUR_JETS_1B, 1, 280.0),
    ([], [GOOD_MU], FOUR_JETS_1B, 1, 280.0),
    ([GOOD_E], [GOOD_MU], FOUR_JETS_1B, 0, None),  # two leptons
    ([{**GOOD_E, "cutBased": 3}], [], FOUR_JETS_1B, 0, None),  # electron fails ID
    ([{**GOOD_E, "eta": 2.2}], [], FOUR_JETS_1B, 0, None),
    ([{**GOOD_E, "sip3d": 5.0}], [], FOUR_JETS_1B, 0, None),
    ([], [{**GOOD_MU, "pfRelIso04_all": 0.2}], FOUR_JETS_1B, 0, None),
    ([], [{**GOOD_MU, "tightId": False}], FOUR_JETS_1B, 0, None),
    ([{**GOOD_E, "pt": 25.0}], [], FOUR_JETS_1B, 0, None),  # lepton too soft
    ([GOOD_E], [], FOUR_JETS_1B[:3], 0, None),  # three jets
    ([GOOD_E], [], [*FOUR_JETS_1B[:3], jet(40, jet_id=2)], 0, None),  # jetId != 6
    ([GOOD_E], [], [*FOUR_JETS_1B[:3], jet(40, eta=2.5)], 0, None),
    ([GOOD_E], [], [*FOUR_JETS_1B[:3], jet(29.0)], 0, None),
    ([GOOD_E], [], [jet(100), jet(80), jet(60), jet(40)], 0, None),  # no b-tag
    ([GOOD_E], [], TWO_B, 2, None),  # trijet: computed below
    ([GOOD_E], [], [*FOUR_JETS_1B, jet(31, jet_id=0, btag=0.99)], 1, 280.0),  # bad jet ignored
]


def write_events(path, events):
    """A NanoAOD-like TTree with exactly these objects (explicit types, any emptiness)."""
    import awkward as ak
    import numpy as np
    import uproot

    def coll(items, types):
        counts = [len(ev) for ev in items]
        return ak.zip(
            {
                f: ak.unflatten(np.array([o[f] for ev in items for o in ev], dtype=t), counts)
                for f, t in types.items()
            }
        )

    jet_types = {
        "pt": "f4",
        "eta": "f4",
        "phi": "f4",
        "mass": "f4",
        "btagCSVV2": "f4",
        "jetId": "i4",
    }
    lepton = {"pt": "f4", "eta": "f4", "phi": "f4", "mass": "f4", "charge": "i4"}
    ele_types = {**lepton, "cutBased": "i4", "sip3d": "f4"}
    mu_types = {**lepton, "tightId": "?", "sip3d": "f4", "pfRelIso04_all": "f4"}
    n = len(events)
    branches = {
        "run": np.ones(n, dtype=np.uint32),
        "luminosityBlock": np.ones(n, dtype=np.uint32),
        "event": np.arange(1, n + 1, dtype=np.uint64),
        "Jet": coll([e[2] for e in events], jet_types),
        "Electron": coll([e[0] for e in events], ele_types),
        "Muon": coll([e[1] for e in events], mu_types),
    }
    with uproot.recreate(path) as f:
        types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()}
        tree = f.mktree("Events", types)
        tree.extend(branches)


# --- the H->tautau stages through the generic runner ---------------------------------------

SKIM, HISTOGRAMS = "htautau::skim", "htautau::histograms"


@functools.cache
def htautau_registry():
    """The H->tautau stages as a workflow registers them (``registries:
    [swift_rules.htautau]``)."""
    from swift_rules.registry import StageRegistry

    registry = StageRegistry(builtins=False)
    registry.register_package("swift_rules.htautau")
    return registry


def run_chain(fileset, out, *, chunksize: int = 100_000, histograms: bool = True) -> dict:
    """Every dataset of a coffea fileset through the generic runner: ``htautau::skim`` over
    its files (a skim stage: its skim goes to ``out/skim/{dataset}.parquet``, its result to
    ``.pkl`` beside it), then ``htautau::histograms`` over that skim
    (``out/histograms/{dataset}.pkl``), both with the dataset's metadata.
    Returns ``{dataset: {stage: (output, record)}}``."""
    from swift_rules.runner import run_stage

    out = Path(out)
    runs = {}
    for dataset, spec in fileset.items():
        common = {
            "sample_metadata": spec["metadata"],
            "registry": htautau_registry(),
            "progress": False,
        }
        skim = run_stage(SKIM, dataset, list(spec["files"]), out / "skim" / f"{dataset}.pkl",
                         stage_config={"skim": True, "chunksize": chunksize}, **common)  # fmt: skip
        runs[dataset] = {SKIM: skim}
        if histograms:
            runs[dataset][HISTOGRAMS] = run_stage(
                HISTOGRAMS, dataset, [skim[1]["skim"]["path"]],
                out / "histograms" / f"{dataset}.pkl", stage_config={"chunksize": chunksize},
                **common,
            )  # fmt: skip
    return runs


def export_chain(fileset, out, luminosity: float | None = None) -> Path:
    """The generic export of the histograms results of :func:`run_chain` (normalised by
    xsec x luminosity / the skim's source events, grouped): ``out/histograms.root``."""
    from swift_rules.export import export
    from swift_rules.htautau.samples import LUMINOSITY_PB

    luminosity = LUMINOSITY_PB if luminosity is None else luminosity
    datasets = {
        str(Path(out) / "histograms" / f"{name}.pkl"): {"name": name, **spec["metadata"]}
        for name, spec in fileset.items()
    }
    target = Path(out) / "histograms.root"
    export(list(datasets), datasets, target, stage=HISTOGRAMS, luminosity=luminosity)
    return target


def ro_crate_context(version: str) -> bytes:
    """The RO-Crate JSON-LD context of ``version``, as ro-crate-py ships it: 1.3 in the
    locked version, 1.1 in rocrate 0.9.0 (from PyPI, once, into .cache/)."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    import pytest
    import rocrate

    if version == "1.3":
        return (Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_bytes()
    cache = Path(__file__).resolve().parents[1] / ".cache" / "rocrate-0.9.0"
    wheels = sorted(cache.glob("rocrate-0.9.0-*.whl"))
    if not wheels:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "rocrate==0.9.0", "-d",
             str(cache), "-q"], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        wheels = sorted(cache.glob("rocrate-0.9.0-*.whl"))
        if not wheels:
            pytest.skip(f"cannot download rocrate 0.9.0 (its RO-Crate 1.1 context): {proc.stderr}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.read("rocrate/data/ro-crate.jsonld")


def validate_crate(crate_dir, cache_dir, profile="workflow-run-crate-0.5") -> list[str]:
    """The REQUIRED issues roc-validator finds in a crate against ``profile``, offline:
    the RO-Crate contexts it fetches (through requests and through rdflib's urllib) come
    from ro-crate-py's copies; web data entities are not fetched."""
    import email.message
    import io
    import urllib.request
    import urllib.response
    from pathlib import Path

    import requests
    from requests_cache import CachedSession
    from rocrate_validator import models, services

    contexts = {
        f"https://w3id.org/ro/crate/{v}/context": ro_crate_context(v) for v in ("1.1", "1.3")
    }
    cache = Path(cache_dir) / "http_cache"
    session = CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1)
    for url, context in contexts.items():
        import urllib3

        response = requests.Response()
        response.status_code, response._content, response.url = 200, context, url
        response.headers["Content-Type"] = "application/ld+json"
        response.request = requests.Request("GET", url).prepare()
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(context), status=200,
                                            headers=response.headers, request_url=url)  # fmt: skip
        session.cache.save_response(response)

    def local(self, request):
        if request.full_url not in contexts:
            raise urllib.error.URLError(f"offline: {request.full_url}")
        headers = email.message.Message()
        headers["Content-Type"] = "application/ld+json"
        body = io.BytesIO(contexts[request.full_url])
        out = urllib.response.addinfourl(body, headers, request.full_url, 200)
        out.msg = "OK"
        return out

    handlers = [type("Https", (urllib.request.HTTPSHandler,), {"https_open": local}),
                type("Http", (urllib.request.HTTPHandler,), {"http_open": local})]  # fmt: skip
    urllib.request.install_opener(urllib.request.build_opener(*handlers))
    try:
        settings = models.ValidationSettings(
            rocrate_uri=Path(crate_dir).resolve(), profile_identifier=profile,
            requirement_severity=models.Severity.REQUIRED, skip_availability_check=True,
            offline=True, cache_path=cache,
        )  # fmt: skip
        result = services.validate(settings)
    finally:
        urllib.request.install_opener(urllib.request.build_opener())
    return [f"{issue.check.identifier}: {issue.message}" for issue in result.get_issues()]


# --- the reference workflow's work folders -------------------------------------------------

TOY_STAGE = '''
import awkward as ak
from coffea import processor

from toy_helpers import threshold


class CountProcessor(processor.ProcessorABC):
    """Counts jets above a threshold: a user's own stage."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def process(self, events):
        n = ak.sum(ak.num(events.Jet.pt[events.Jet.pt > threshold()]))
        return {"jets": {events.metadata["dataset"]: int(n) * self.scale}}

    def postprocess(self, accumulator):
        return accumulator
'''


def write_workdir(
    path: Path, *, fit: bool, extra_stage: bool, events: int = 1000, files: int = 2
) -> Path:
    config = agc_config(
        results="results",
        data={
            "generated": {"preset": "tiny", "events_per_file": events, "files_per_sample": files},
            "files_per_group": 1,
        },
        stages={"agc::ttbar": {"chunksize": 600, "options": {"btag_threshold": 0.5}}},
        outputs={"plots": {"include": ["hists_*_nominal"], "formats": ["png"]}},
        analysis={"fit": fit, "hepdata": fit},
    )
    if extra_stage:
        config["register"] = {"toy::count": {"cpu": "toy_stage:CountProcessor"}}
        config["stages"]["toy::count"] = {"options": {"scale": 1.0}}
        (path / "toy_stage.py").write_text(TOY_STAGE)
        (path / "toy_helpers.py").write_text("def threshold():\n    return 30.0\n")
        (path / "toy_unrelated.py").write_text("VALUE = 1\n")
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    if extra_stage:
        # The reference Snakefile plus the toy stage's merged output as a target.
        (path / "Snakefile").write_text(
            (REPO / "workflow" / "Snakefile").read_text()
            + textwrap.dedent(
                """
                rule toy:
                    input: SR.merged("toy::count")
                """
            )
        )
    return path


def result_checksums(folder, generated: str = "data/generated") -> dict[str, str]:
    """SHA-256 of every result of a run in ``folder`` (a workflow's working directory):
    each file under results/ that is a result (swift_rules.crate.NOT_RESULTS: not the
    logs and run records, the run's crate, report.html), and each generated input (under
    ``generated``). Keys: paths relative to ``folder``."""
    import hashlib
    from pathlib import Path

    from swift_rules.crate import NOT_RESULTS

    folder = Path(folder)
    out = {}
    for top in ("results", generated):
        for p in sorted((folder / top).rglob("*")):
            inside = p.relative_to(folder / top).as_posix()
            if p.is_file() and not (top == "results" and inside.startswith(NOT_RESULTS)):
                out[f"{top}/{inside}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_profile_run_equals_local_run(run: dict) -> None:
    """A backend's profile run (tests/batch/: ``path``, its ``local`` run and its
    ``second``, completing, run) gives the histograms, the merged stage output and the
    event counts of the same workflow run on this machine, bit for bit. Each backend's
    file calls it, so that a profile run is made once, on the worker that runs the file."""
    path, local, second = run["path"], run["local"], run["second"]
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    assert_bitwise_equal(
        histograms(path / "results/histograms.root"),
        histograms(local / "results/histograms.root"),
    )
    merged = "results/agc/ttbar/merged.pkl"
    assert_same_result(path / merged, local / merged)
    events = [json.loads((p / "results/provenance.json").read_text())["events"]
              for p in (path, local)]  # fmt: skip
    assert events[0] == events[1]


def assert_same_results(runs: dict) -> None:
    """The runs ({name: folder}) have the same result files, with the same bytes; an
    error names, for each run that differs from the first, the files that do."""
    (first, folder), *others = runs.items()
    reference = result_checksums(folder)
    assert len(reference) > 20, f"{first}: only {len(reference)} results in {folder}"
    problems = []
    for name, other in others:
        sums = result_checksums(other)
        if sums.keys() != reference.keys():
            extra = sorted(sums.keys() ^ reference.keys())
            problems.append(f"{name}: other files than {first}'s: {extra[:20]}")
        differ = sorted(k for k in reference.keys() & sums.keys() if reference[k] != sums[k])
        if differ:
            problems.append(f"{name}: {len(differ)} files differ from {first}'s: {differ[:20]}")
    assert not problems, "\n".join(problems)

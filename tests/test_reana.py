"""REANA: reana.yaml, the image's environment definition, `reana-client validate` under
REANA's two client lines (0.9.6, and 0.95.0a3 with Snakemake 8.27.1), and the whole
reference workflow under Snakemake 7.32.4 (REANA 0.9's engine), 8.27.1 (the 0.95 line's)
and 9 (the lock's): the same bytes in every result.

reana-client and the older Snakemakes live in their own environments (.venv-reana/,
.venv-reana-0.95/, .venv-snakemake7/, .venv-snakemake8/), which environment/envs.py
builds on first use from PyPI: without PyPI these tests fail, they do not skip. No REANA
server can be reached here, so `reana-client run` itself is not tried: everything up to
it is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from helpers import REPO, assert_same_results, snakemake_exe

sys.path.insert(0, str(REPO / "environment"))
import envs

SPEC = yaml.safe_load((REPO / "reana.yaml").read_text())
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ghcr.io/swift/swift-rules:{VERSION}"
# Packages whose Snakemake 7 and 8 versions differ from the lock's (Snakemake 9) ones.
SNAKEMAKE7_OVERRIDES = {"snakemake", "pulp", "tabulate"}
SNAKEMAKE8_OVERRIDES = {"snakemake", "pulp", "snakemake-interface-storage-plugins", "wrapt"}
# Engine environment -> (its Snakemake, its overrides of the lock).
ENGINES = {"snakemake7": ("7.32.4", SNAKEMAKE7_OVERRIDES),
           "snakemake8": ("8.27.1", SNAKEMAKE8_OVERRIDES)}  # fmt: skip
# REANA's client lines: environment -> (reana-client, the Snakemake it validates with).
CLIENTS = {"reana-client": ("0.9.6", "7.32.4"), "reana-client-0.95": ("0.95.0a3", "8.27.1")}
# The final outputs, as reana.yaml lists them.
OUTPUT_FILES = SPEC["outputs"]["files"]
OUTPUT_DIRS = SPEC["outputs"]["directories"]


def pins(path: Path) -> dict[str, str]:
    return envs.pins(path)


HTT_SPEC_FILE = REPO / "workflow/htautau/reana.yaml"
HTT_SPEC = yaml.safe_load(HTT_SPEC_FILE.read_text())


def make_workspace(
    path: Path, config_changes: dict | None = None, spec_file: Path = REPO / "reana.yaml"
) -> Path:
    """What `reana-client upload` sends (the spec's inputs, and the spec as reana.yaml),
    with the tiny preset."""
    spec = yaml.safe_load(spec_file.read_text())
    path.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for d in spec["inputs"]["directories"]:
        shutil.copytree(REPO / d, path / d, ignore=ignore)
    for f in spec["inputs"].get("files", []):
        shutil.copy2(REPO / f, path / f)
    shutil.copy2(spec_file, path / "reana.yaml")
    config_path = path / spec["inputs"]["parameters"]["input"]
    config = yaml.safe_load(config_path.read_text())
    config["data"]["generated"]["preset"] = "tiny"
    for key, value in (config_changes or {}).items():
        config[key] = value
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(cmd, *, cwd, env_bin: Path | None = None, pythonpath: Path | None = None, timeout=600):
    env = dict(os.environ)
    if env_bin is not None:
        env["PATH"] = f"{env_bin}{os.pathsep}{env['PATH']}"
        env.pop("VIRTUAL_ENV", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc


def check(proc: subprocess.CompletedProcess, what: str) -> str:
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed ({proc.returncode}):\n{out[-6000:]}")
    return out


def histogram_contents(path: Path) -> dict[str, tuple[bytes, bytes, bytes]]:
    """Every histogram: raw bytes of its bin edges, values and variances (with flow)."""
    out = {}
    with uproot.open(path) as f:
        for key in f.keys(cycle=False):
            h = f[key]
            out[key] = (
                np.ascontiguousarray(h.axis().edges()).tobytes(),
                np.ascontiguousarray(h.values(flow=True)).tobytes(),
                np.ascontiguousarray(h.variances(flow=True)).tobytes(),
            )
    return out


def assert_same_outputs(a: Path, b: Path) -> None:
    """The final outputs of two runs: histograms bit for bit, every other file byte for byte."""
    ha, hb = (
        histogram_contents(a / "results/histograms.root"),
        histogram_contents(b / "results/histograms.root"),
    )
    assert ha.keys() == hb.keys() and len(ha) > 100
    different = [k for k in ha if ha[k] != hb[k]]
    assert not different, f"histograms differ: {different[:10]}"
    from swift_rules.crate import NOT_RESULTS

    # The crate and the run's copies of workflow and config say how and when it ran.
    results = ("results/" + n for n in NOT_RESULTS)
    skip = tuple(results)
    files = [f for f in OUTPUT_FILES if not f.endswith(".root") and not f.startswith(skip)]
    for d in (d for d in OUTPUT_DIRS if not (d + "/").startswith(skip)):
        names_a = sorted(p.relative_to(a) for p in (a / d).rglob("*") if p.is_file())
        names_b = sorted(p.relative_to(b) for p in (b / d).rglob("*") if p.is_file())
        assert names_a == names_b and names_a, d
        files += [str(p) for p in names_a]
    different = [f for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    assert not different, f"outputs differ: {different}"
    fa = json.loads((a / "results/fit/fit_results.json").read_text())
    assert fa["converged"] and fa["poi"]["name"] == "ttbar_norm"


# -- the specification and the environment definition (no environment needed) --------


def test_reana_yaml_names_workflow_config_inputs_and_outputs():
    assert str(SPEC["version"]).startswith("0.9")
    workflow = SPEC["workflow"]
    assert workflow["type"] == "snakemake"
    assert workflow["file"] == "workflow/Snakefile"
    inputs = SPEC["inputs"]
    config_file = inputs["parameters"]["input"]
    assert config_file == "config/config.yaml"
    # Everything the workflow reads is uploaded: the Snakefile, the config, and the
    # workflow plan that the Snakefile imports when REANA's engine parses it.
    uploaded = [*inputs["directories"], *inputs.get("files", [])]
    for needed in (workflow["file"], config_file, "swift_rules/rules/stages.smk"):
        assert any(needed == u or needed.startswith(u + "/") for u in uploaded), needed
    for u in uploaded:
        assert (REPO / u).exists(), u
    # The outputs are the workflow's final targets (the generated inputs excepted).
    config = yaml.safe_load((REPO / config_file).read_text())
    results = config["results"]
    finals = {
        f"{results}/histograms.root", f"{results}/provenance.json",
        f"{results}/fit/fit_results.json", f"{results}/fit/workspace.json",
        f"{results}/plots", f"{results}/hepdata",
        f"{results}/agc/ttbar/histograms.root", f"{results}/agc/ttbar/plots",
        f"{results}/ro-crate-metadata.json", f"{results}/run",
    }  # fmt: skip
    assert set(OUTPUT_FILES) | set(OUTPUT_DIRS) == finals


def test_environment_definition_agrees_with_lock():
    lock = pins(REPO / "environment/requirements.lock")
    dockerfile = (REPO / "environment/Dockerfile").read_text()
    # The base image: a full Python release of the project's minor version.
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    m = re.fullmatch(r"docker\.io/library/python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert m, f"base image {base} is not pinned to a Python release"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f">={m[1]}.{m[2]}" == pyproject["project"]["requires-python"]
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{m[1]}{m[2]}"
    # Every pip install of the image takes the lock as constraints, and nothing else floats.
    installs = re.findall(r"pip install([^&]*)", dockerfile.replace("\\\n", " "))
    assert len(installs) == 2
    for args in installs:
        assert "--constraint environment/requirements.lock" in args, args
    assert "COPY environment/requirements.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile
    build = REPO / "environment/image-build.txt"
    lines = [ln.split("#")[0].strip() for ln in build.read_text().splitlines()]
    assert all("==" in ln for ln in lines if ln), "image-build.txt: unpinned line"
    for name, version in pins(build).items():
        assert lock.get(name, version) == version, name
    build_system = pyproject["build-system"]["requires"]
    assert any(r.startswith("hatchling") for r in build_system) and "hatchling" in pins(build)
    # The engines' environments: the lock's versions, but for what each cannot use.
    for name, (version, overrides) in ENGINES.items():
        path = envs.ENGINES[name]
        lines = path.read_text().splitlines()
        assert all("==" in ln for ln in (x.split("#")[0].strip() for x in lines) if ln), name
        engine = pins(path)
        assert engine["snakemake"] == version
        assert {n for n in engine if n in lock and lock[n] != engine[n]} == overrides, name
    # ... and the Snakemake each client line validates with is its engine's.
    sm7, sm8 = pins(envs.SNAKEMAKE7), pins(envs.SNAKEMAKE8)
    reana = pins(envs.REANA_CLIENT)
    assert reana["snakemake"] == sm7["snakemake"]
    assert reana["pulp"] == sm7["pulp"] and reana["tabulate"] == sm7["tabulate"]
    reana095 = pins(envs.REANA_CLIENT_095)
    assert reana095["reana-client"] == CLIENTS["reana-client-0.95"][0]
    assert reana095["snakemake"] == sm8["snakemake"] and reana095["pulp"] == sm8["pulp"]


def test_image_name_and_tag_agree():
    from swift_rules.config import validate_config

    assert validate_config({})["reana"]["container"] == f"docker://{IMAGE}"
    dockerfile = (REPO / "environment/Dockerfile").read_text()
    assert f'org.opencontainers.image.version="{VERSION}"' in dockerfile
    assert f"docker build -f environment/Dockerfile -t {IMAGE} ." in dockerfile
    assert IMAGE in (REPO / "docs/reana.md").read_text()


# -- the separate environments ----------------------------------------------------


@pytest.fixture(scope="module")
def reana_env() -> Path:
    return envs.ensure("reana-client")


@pytest.fixture(scope="module")
def snakemake7_env() -> Path:
    return envs.ensure("snakemake7")


@pytest.fixture(scope="module")
def snakemake8_env() -> Path:
    return envs.ensure("snakemake8")


@pytest.fixture(scope="module", params=sorted(CLIENTS))
def client_env(request) -> tuple[str, Path]:
    """Each of REANA's client lines: (its name, its environment)."""
    return request.param, envs.ensure(request.param)


def freeze(venv: Path) -> dict[str, str]:
    out = check(run([venv / "bin/python", "-m", "pip", "freeze", "--all"], cwd=REPO), "freeze")
    return {
        envs.normalise(line.split("==")[0]): line.split("==")[1]
        for line in out.splitlines()
        if "==" in line
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_environment_has_the_locked_versions(name, request):
    venv = request.getfixturevalue(f"{name}_env")
    version, overrides = ENGINES[name]
    installed = freeze(venv)
    lock = pins(REPO / "environment/requirements.lock")
    engine = pins(envs.ENGINES[name])
    assert {n: installed.get(n) for n in engine} == engine
    differ = {n: (v, installed[n]) for n, v in lock.items() if n in installed and installed[n] != v}
    assert set(differ) == overrides, differ
    # swift-rules and the analysis stack are there, at the lock's versions (rocrate: the
    # run's crate).
    for package in ("coffea", "uproot", "cabinetry", "pyhf", "iminuit", "numpy", "hepdata-lib",
                    "rocrate"):  # fmt: skip
        assert installed.get(package) == lock[package], package
    out = check(run([venv / "bin/snakemake", "--version"], cwd=REPO), "version")
    assert out.strip() == version


@pytest.mark.slow
def test_reana_client_environment_has_its_pins(client_env):
    name, venv = client_env
    installed = freeze(venv)
    wanted = pins(envs.PLAIN[name])
    assert {n: installed.get(n) for n in wanted} == wanted
    assert (wanted["reana-client"], wanted["snakemake"]) == CLIENTS[name]


# -- reana-client validate ----------------------------------------------------------


@pytest.mark.slow
def test_reana_client_validate_passes(client_env, tmp_path):
    # In a copy of what would be uploaded: the Snakefile's imports come from there
    # (PYTHONPATH: reana-client's environment has no swift-rules). Both client lines
    # parse the Snakefile and build its DAG (0.95.0a3 quietly, with Snakemake 8.27.1).
    ws = make_workspace(tmp_path / "ws")
    client = client_env[1] / "bin/reana-client"
    proc = run([client, "validate"], cwd=ws, pythonpath=ws, timeout=300)
    out = check(proc, "reana-client validate")
    assert "Valid REANA specification file." in out, out[-3000:]
    assert "Snakemake specification is invalid" not in out
    assert "Workflow operations appear valid." in out
    assert "ERROR" not in out, out[-3000:]


LOAD_SPEC = """
import json, sys
from reana_commons.specification import load_reana_spec
spec = load_reana_spec("reana.yaml", workspace_path=sys.argv[1])
print("SPEC=" + json.dumps(spec["workflow"]["specification"]["steps"], default=str))
"""


@pytest.mark.slow
def test_reana_sees_each_rule_in_the_image_with_resources_from_config(reana_env, tmp_path):
    overrides = {
        "reana": {
            "kubernetes_memory_limit": "3Gi",
            "rules": {
                "swift_process": {
                    "compute_backend": "htcondorcern",
                    "htcondor_max_runtime": "espresso",
                    "kubernetes_memory_limit": "8Gi",
                },
                "agc_fit": {"kubernetes_job_timeout": 3600},
            },
        }
    }
    ws = make_workspace(tmp_path / "ws", overrides)
    proc = run([reana_env / "bin/python", "-c", LOAD_SPEC, ws], cwd=ws, pythonpath=ws)
    out = check(proc, "load_reana_spec")
    steps = {s["name"]: s for s in json.loads(out.split("SPEC=", 1)[1].splitlines()[0])}
    assert set(steps) >= {
        "swift_process", "swift_merge_sample", "swift_merge", "swift_generate", "swift_fileset",
        "swift_export", "swift_draw", "agc_histograms", "agc_provenance", "agc_fit", "agc_plots",
        "agc_hepdata",
    }  # fmt: skip
    for name, step in steps.items():
        # Shell commands only, each in our image.
        assert step["commands"] and all(c.strip() for c in step["commands"]), name
        assert step["environment"] == IMAGE, (name, step["environment"])
    assert steps["swift_process"]["compute_backend"] == "htcondorcern"
    assert steps["swift_process"]["kubernetes_memory_limit"] == "8Gi"
    assert steps["agc_fit"]["kubernetes_memory_limit"] == "3Gi"
    assert steps["agc_fit"]["compute_backend"] is None


@pytest.mark.slow
def test_reana_0_95_with_snakemake_8_validates_but_lists_no_steps(tmp_path):
    # reana-commons 0.95.0a12 (Snakemake 8.27.1) checks that the workflow parses and
    # returns no steps: what its server would show of the rules cannot be checked here.
    venv = envs.ensure("reana-client-0.95")
    ws = make_workspace(tmp_path / "ws")
    load = LOAD_SPEC.replace("workspace_path=sys.argv[1]", "workspace_path=None")
    out = check(run([venv / "bin/python", "-c", load], cwd=ws, pythonpath=ws), "load_reana_spec")
    assert json.loads(out.split("SPEC=", 1)[1].splitlines()[0]) == []


# -- the whole workflow: Snakemake 7.32.4 and 8.27.1 as REANA's engines call them, and 9 --


def run_snakemake9(ws: Path) -> Path:
    cmd = [
        snakemake_exe(), "--profile", REPO / "profiles/local", "--snakefile",
        ws / SPEC["workflow"]["file"], "--directory", ws, "--cores", "2",
    ]  # fmt: skip
    check(run(cmd, cwd=ws, env_bin=Path(sys.executable).parent), "snakemake 9")
    return ws


@pytest.fixture(scope="module")
def snakemake9_run(tmp_path_factory):
    return run_snakemake9(make_workspace(tmp_path_factory.mktemp("sm9")))


def run_engine(venv: Path, ws: Path, what: str, report: bool = False) -> str:
    """environment/reana_engine.py in ``venv``: the workspace run as REANA's engine of that
    Snakemake runs it, and its report (not Snakemake 7's: it fetches licences from the
    network)."""
    engine = [venv / "bin/python", REPO / "environment/reana_engine.py", ws, "--cores", "2"]
    if not report:
        engine.append("--no-report")
    return check(run(engine, cwd=ws, env_bin=venv / "bin"), what)


@pytest.fixture(scope="module")
def snakemake7_run(snakemake7_env, tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("sm7"))
    return ws, run_engine(snakemake7_env, ws, "REANA-like Snakemake 7 run")


@pytest.fixture(scope="module")
def snakemake8_run(snakemake8_env, tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("sm8"))
    return ws, run_engine(snakemake8_env, ws, "REANA-0.95-like Snakemake 8 run", report=True)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["snakemake7", "snakemake8"])
def test_the_engine_runs_the_whole_workflow_as_reana_would(engine, request):
    ws, out = request.getfixturevalue(f"{engine}_run")
    for f in OUTPUT_FILES:
        assert (ws / f).stat().st_size > 0, f
    for d in OUTPUT_DIRS:
        assert any((ws / d).iterdir()), d
    # Every job was a shell command, printed as the engine prints it for REANA's jobs.
    assert "swift-rules run agc::ttbar" in out and "swift-rules agc fit" in out
    assert re.search(r"(\d+) of \1 steps \(100%\) done", out)
    if engine == "snakemake8":  # the engine's report, with the rules' categories
        report = (ws / "report.html").read_text()
        assert "Report created" in out and "Histograms" in report and "agc::ttbar" in report
    # The run's crate names the engine that ran it.
    crate = json.loads((ws / "results/ro-crate-metadata.json").read_text())
    action = next(e for e in crate["@graph"] if e["@id"] == "#run")
    assert action["engine"] == f"snakemake {ENGINES[engine][0]}"


@pytest.mark.slow
def test_snakemake_7_8_and_9_give_the_same_bytes(snakemake7_run, snakemake8_run, snakemake9_run):
    # Every result (each file under results/ but the logs, run records and the crate)
    # and every generated input: the same bytes under the three engines.
    runs = {"Snakemake 9": snakemake9_run, "Snakemake 7.32.4": snakemake7_run[0],
            "Snakemake 8.27.1": snakemake8_run[0]}  # fmt: skip
    assert_same_results(runs)
    # ... the final outputs among them, histograms compared bin by bin first (a clearer
    # message if they ever differ).
    assert_same_outputs(snakemake7_run[0], snakemake9_run)


@pytest.mark.slow
def test_two_clean_runs_give_identical_outputs(snakemake9_run, tmp_path):
    again = run_snakemake9(make_workspace(tmp_path / "again"))
    assert_same_outputs(snakemake9_run, again)


# -- the second reference analysis: H->tautau, its own spec ---------------------------


def test_htautau_spec_names_its_workflow_config_and_outputs():
    assert HTT_SPEC["workflow"] == {"type": "snakemake", "file": "workflow/htautau/Snakefile"}
    assert HTT_SPEC["inputs"]["parameters"]["input"] == "config/htautau.yaml"
    config = yaml.safe_load((REPO / "config/htautau.yaml").read_text())
    results = config["results"]
    finals = {f"{results}/qcd.root", f"{results}/plots", f"{results}/ro-crate-metadata.json",
              f"{results}/run"}  # fmt: skip
    for stage in config["stages"]:
        finals |= {f"{results}/{stage.replace('::', '/')}/histograms.root",
                   f"{results}/{stage.replace('::', '/')}/plots"}  # fmt: skip
    assert set(HTT_SPEC["outputs"]["files"]) | set(HTT_SPEC["outputs"]["directories"]) == finals


@pytest.mark.slow
def test_reana_client_validates_the_htautau_spec(client_env, tmp_path):
    ws = make_workspace(tmp_path / "ws", spec_file=HTT_SPEC_FILE)
    client = client_env[1] / "bin/reana-client"
    proc = run([client, "validate"], cwd=ws, pythonpath=ws, timeout=300)
    out = check(proc, "reana-client validate")
    assert "Valid REANA specification file." in out, out[-3000:]
    assert "Workflow operations appear valid." in out and "ERROR" not in out, out[-3000:]


@pytest.mark.slow
def test_snakemake7_runs_the_htautau_workflow_as_reana_would(snakemake7_env, tmp_path):
    ws = make_workspace(tmp_path / "ws", spec_file=HTT_SPEC_FILE)
    engine = [
        snakemake7_env / "bin/python", REPO / "environment/reana_engine.py", ws,
        "--cores", "2", "--no-report",
    ]  # fmt: skip
    out = check(run(engine, cwd=ws, env_bin=snakemake7_env / "bin"), "Snakemake 7 run")
    for f in HTT_SPEC["outputs"]["files"]:
        assert (ws / f).stat().st_size > 0, f
    for d in HTT_SPEC["outputs"]["directories"]:
        assert any((ws / d).iterdir()), d
    assert "swift-rules run htautau::skim" in out and "swift-rules htautau qcd" in out

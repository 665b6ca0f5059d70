"""The cookiecutter template: rendered for several answers; rendered projects installed with
pip, their own tests, workflow and output checks run as their CI runs them; the switch to
real files; a template update with cruft."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import hist
import pytest
import yaml
from helpers import REPO, assert_same_results, nanoaod_file, run_cli, snakemake_exe

from swift_rules.datasets import read_fileset
from swift_rules.device import gpu_status

pytestmark = pytest.mark.slow

cookiecutter_main = pytest.importorskip("cookiecutter.main")
from cookiecutter.exceptions import FailedHookException  # noqa: E402

TEMPLATE = REPO / "cookiecutter-template"
CONTEXT = json.loads((TEMPLATE / "cookiecutter.json").read_text())
# Every rendered project has these, whatever the answers (PKG: the package).
COMMON_FILES = {
    "pyproject.toml", "README.md", "reana.yaml", "registry.yaml", ".gitignore",
    "workflow/Snakefile", "workflow/rules/analysis.smk", "config/config.yaml",
    "datasets/fileset.json", "datasets/metadata.yaml", "profiles/local/config.yaml",
    "src/PKG/__init__.py", "src/PKG/generator.py", "src/PKG/generate.py", "src/PKG/skim.py",
    "src/PKG/histograms.py", "src/PKG/yields.py", "tests/conftest.py",
    "tests/test_generator.py", "tests/test_skim.py", "tests/test_histograms.py",
    "tests/test_yields.py", "tests/test_outputs.py",
}  # fmt: skip
GPU_FILES = {"src/PKG/histograms_gpu.py", "tests/test_histograms_gpu.py"}
# The rendered project's unit tests (plain `pytest`): passed, and the GPU tests' part.
UNIT_TESTS, GPU_TESTS, GPU_ONLY_TESTS, WORKFLOW_TESTS = 31, 9, 6, 6


def render(tmp_path: Path, *, from_repo_root: bool = False, **answers) -> Path:
    context = {"analysis_name": "Dimuon Search", "swift_rules_path": str(REPO), **answers}
    if from_repo_root:  # `cookiecutter <repo> --directory cookiecutter-template`
        kwargs = {"template": str(REPO), "directory": "cookiecutter-template"}
    else:
        kwargs = {"template": str(TEMPLATE)}
    out = cookiecutter_main.cookiecutter(
        **kwargs, no_input=True, extra_context=context, output_dir=str(tmp_path)
    )
    return Path(out)


def files_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}


def expected_files(package: str, *extra: set[str]) -> set[str]:
    return {f.replace("PKG", package) for f in COMMON_FILES.union(*extra)}


def assert_fully_rendered(project: Path) -> None:
    for path in project.rglob("*"):
        assert "cookiecutter" not in str(path.relative_to(project)), path
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text and "{%" not in text, path


def assert_knows_no_agc(project: Path) -> None:
    """A new analysis uses the generic layer only, nothing of the AGC's."""
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for name in ("swift_rules.agc", "agc.smk", "agc::", "AGC"):
                assert name not in text, (path, name)


def registrations(project: Path) -> dict:
    return yaml.safe_load((project / "registry.yaml").read_text())


def chosen_profiles(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "profiles").iterdir())


# Local profile only, no GPU variant, GitHub CI, swift-rules from this checkout.
MINIMAL = {"backends": "local", "gpu_variant": "no", "ci": "github", "swift_rules_source": "path"}


@pytest.fixture(scope="module")
def minimal(tmp_path_factory) -> Path:
    """The project of MINIMAL's answers."""
    return render(tmp_path_factory.mktemp("minimal"), **MINIMAL)


def test_minimal_project(minimal):
    assert minimal.name == "dimuon_search"
    assert files_of(minimal) == expected_files("dimuon_search", {".github/workflows/ci.yml"})
    assert chosen_profiles(minimal) == ["local"]
    assert_fully_rendered(minimal)
    assert_knows_no_agc(minimal)
    assert registrations(minimal) == {
        "register": {
            "dimuon_search::skim": {"cpu": "dimuon_search.skim:Skim"},
            "dimuon_search::histograms": {"cpu": "dimuon_search.histograms:Histograms"},
        },
        "generators": {"dimuon_search::toy": "dimuon_search.generator:ToyGenerator"},
    }
    pyproject = (minimal / "pyproject.toml").read_text()
    assert f'"swift-rules[workflow] @ file://{REPO}"' in pyproject
    assert "cupy" not in pyproject
    snakefile = (minimal / "workflow/Snakefile").read_text()
    assert 'include: rules_path("stages.smk")' in snakefile
    assert 'include: "rules/analysis.smk"' in snakefile
    assert "SR.targets()" in snakefile and "rule swift_process" not in snakefile  # not copied
    assert (minimal / "profiles/local/config.yaml").read_text() == (
        REPO / "profiles/local/config.yaml"
    ).read_text()
    # The README maps every step to its file.
    readme = (minimal / "README.md").read_text()
    for step, where in [("1. datasets", "datasets/fileset.json"),
                        ("1b. generator", "src/dimuon_search/generator.py"),
                        ("2. skim", "src/dimuon_search/skim.py"),
                        ("3. histograms", "src/dimuon_search/histograms.py"),
                        ("4. outputs", "`outputs:`"),
                        ("5. own steps", "workflow/rules/analysis.smk")]:  # fmt: skip
        row = next(line for line in readme.splitlines() if line.startswith(f"| {step} |"))
        assert where in row, row


def test_the_config_chains_a_skim_and_a_histogram_stage_on_generated_data(minimal):
    config = yaml.safe_load((minimal / "config/config.yaml").read_text())
    assert config["registries"] == ["registry.yaml"]
    assert config["data"]["source"] == "generated"
    assert config["data"]["generated"]["generator"] == "dimuon_search::toy"
    assert config["data"]["generated"]["preset"] == "tiny"
    skim, histograms = config["stages"]["dimuon_search::skim"], config["stages"][
        "dimuon_search::histograms"]  # fmt: skip
    assert skim["skim"] is True
    assert histograms["input"] == "dimuon_search::skim" and histograms["schema"] == "nanoaod"
    assert "device" not in histograms  # no GPU variant to choose
    assert config["outputs"]["luminosity"] > 0
    # The example fileset for real files: coffea's format, with data and simulation.
    datasets = read_fileset(minimal / "datasets/fileset.json")
    assert sorted(ds.is_data for ds in datasets.values()) == [False, False, True]
    assert all("xsec" in ds.metadata for ds in datasets.values() if not ds.is_data)


def test_full_project_from_repo_root(tmp_path):
    project = render(
        tmp_path, from_repo_root=True, namespace="mu", backends="all", gpu_variant="yes",
        ci="both", swift_rules_source="git",
    )  # fmt: skip
    assert files_of(project) == expected_files(
        "dimuon_search", GPU_FILES, {".github/workflows/ci.yml", ".gitlab-ci.yml"},
        {f"profiles/{name}/config.yaml" for name in CONTEXT["_profiles"]},
    )  # fmt: skip
    for name in CONTEXT["_profiles"]:
        assert (project / "profiles" / name / "config.yaml").read_text() == (
            REPO / "profiles" / name / "config.yaml"
        ).read_text()
    assert_fully_rendered(project)
    assert_knows_no_agc(project)
    assert registrations(project)["register"]["mu::histograms"] == {
        "cpu": "dimuon_search.histograms:Histograms",
        "gpu": "dimuon_search.histograms_gpu:HistogramsGPU",
    }
    generators = registrations(project)["generators"]
    assert generators == {"mu::toy": "dimuon_search.generator:ToyGenerator"}
    pyproject = (project / "pyproject.toml").read_text()
    assert (
        '"swift-rules[workflow,htcondor,slurm,kubernetes,dirac] @ '
        'git+https://github.com/swift/swift-rules@v0.1.0"'
    ) in pyproject
    config = yaml.safe_load((project / "config/config.yaml").read_text())
    assert set(config["stages"]) == {"mu::skim", "mu::histograms"}
    assert config["stages"]["mu::histograms"]["device"] == "auto"
    reana = yaml.safe_load((project / "reana.yaml").read_text())
    assert "results/mu/histograms/histograms.root" in reana["outputs"]["files"]
    assert "results/mu/histograms/plots" in reana["outputs"]["directories"]
    assert {"src", "workflow", "config", "datasets"} <= set(reana["inputs"]["directories"])
    assert "registry.yaml" in reana["inputs"]["files"]


def test_pypi_project_with_htcondor(tmp_path):
    project = render(tmp_path, backends="local+htcondor", ci="gitlab", swift_rules_source="pypi")
    assert files_of(project) == expected_files(
        "dimuon_search", {".gitlab-ci.yml", "profiles/htcondor/config.yaml"}
    )
    pyproject = (project / "pyproject.toml").read_text()
    assert '"swift-rules[workflow,htcondor]>=0.1"' in pyproject
    assert "allow-direct-references" not in pyproject


def test_every_backends_choice_names_profiles_that_swift_rules_ships():
    # Adding a profile: a `local+NAME` choice, NAME: its swift-rules extra under
    # `_profiles`, and a copy of swift-rules' profiles/NAME in the template.
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]  # fmt: skip
    profiles = CONTEXT["_profiles"]
    for choice in CONTEXT["backends"]:
        if choice != "all":
            first, *names = choice.split("+")
            assert first == "local" and set(names) <= set(profiles), choice
    skeleton = TEMPLATE / "{{cookiecutter.package_name}}" / "profiles"
    assert sorted(p.name for p in skeleton.iterdir()) == sorted(["local", *profiles])
    for name, extra in profiles.items():
        assert extra in extras, (name, extra)
        assert (skeleton / name / "config.yaml").read_text() == (
            REPO / "profiles" / name / "config.yaml"
        ).read_text()


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"package_name": "1-bad-name"}, "package_name '1-bad-name' is not a valid Python"),
        ({"package_name": "class"}, "package_name 'class' is not a valid Python"),
        ({"namespace": "my::ns"}, "namespace 'my::ns' cannot be used in a stage name"),
        ({"swift_rules_path": "relative/path"}, "must be an absolute path"),
    ],
)
def test_invalid_answers_fail_in_the_pre_gen_hook(tmp_path, capfd, answers, message):
    with pytest.raises(FailedHookException):
        render(tmp_path, swift_rules_source="path", **answers)
    assert message in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def gpu_project(tmp_path_factory) -> Path:
    """The GPU variant, every profile, GitLab CI, swift-rules from this checkout."""
    return render(
        tmp_path_factory.mktemp("gpu"), analysis_name="Muon Jets", namespace="mu",
        backends="all", gpu_variant="yes", ci="gitlab", swift_rules_source="path",
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory, minimal, gpu_project) -> dict[str, str]:
    """The environment in which the rendered projects are installed: `pip install` builds
    their wheels (hatchling, no build isolation: offline) into a folder of their own.

    Their dependencies (swift-rules from this checkout, coffea, snakemake, pytest) are
    this environment's. A fresh virtual environment would not do: its site-packages would
    not be where those dependencies are, and swift-rules' code fingerprint would then
    take every third-party module for the analysis' own code.
    """
    target = tmp_path_factory.mktemp("site-packages")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--target", str(target), str(minimal), str(gpu_project)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    bin_dir = str(Path(sys.executable).parent)  # python, snakemake, swift-rules
    # The install folder first, then this environment's own path (this checkout).
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH")) if p)
    # The rendered project's CI runs its own pytest: not with this run's options.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return {**env, "PYTHONPATH": path, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_in(project: Path, env: dict[str, str], *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)


def ci_commands(project: Path) -> list[str]:
    """The commands of the project's CI job, after its install step (done by `installed`)."""
    github = project / ".github/workflows/ci.yml"
    if github.exists():
        steps = yaml.safe_load(github.read_text())["jobs"]["test"]["steps"]
        commands = [step["run"] for step in steps if "run" in step]
    else:
        commands = yaml.safe_load((project / ".gitlab-ci.yml").read_text())["test"]["script"]
    assert commands[0] == "python -m pip install -e '.[test]'"
    return commands[1:]


def job_stats(text: str) -> dict[str, int]:
    """Rule -> jobs, from the table a Snakemake dry run prints (empty: nothing to do)."""
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def test_gpu_project(gpu_project):
    assert files_of(gpu_project) >= expected_files("muon_jets", GPU_FILES, {".gitlab-ci.yml"})
    assert not (gpu_project / ".github").exists()
    assert_fully_rendered(gpu_project)
    pyproject = (gpu_project / "pyproject.toml").read_text()
    assert '"swift-rules[workflow,htcondor,slurm,kubernetes,dirac] @ file://' in pyproject
    assert 'gpu = ["cupy-cuda12x>=13"]' in pyproject
    assert "histograms_gpu.py" in (gpu_project / "README.md").read_text()


@pytest.fixture(scope="module")
def minimal_ci(minimal, installed) -> dict[str, subprocess.CompletedProcess]:
    """The minimal project's CI, with this environment's `python` and `snakemake`: unit
    tests, the workflow on the tiny preset, the checks of its outputs."""
    code = "import dimuon_search, swift_rules; print(dimuon_search.__file__, swift_rules.__file__)"
    where = run_in(minimal, installed, sys.executable, "-c", code).stdout.split()
    assert where[0].startswith(installed["PYTHONPATH"].split(os.pathsep)[0]), where
    assert where[1] == str(REPO / "swift_rules/__init__.py"), where  # this checkout's

    commands = ci_commands(minimal)
    assert commands == [
        "python -m pytest", "snakemake --profile profiles/local --cores 2",
        "python -m pytest -m workflow",
    ]  # fmt: skip
    return dict(zip(("unit", "workflow", "outputs"),
                    (run_in(minimal, installed, "bash", "-c", c) for c in commands),
                    strict=True))  # fmt: skip


def test_installed_project_unit_tests(minimal_ci):
    tests = minimal_ci["unit"]
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert f"{UNIT_TESTS} passed, {WORKFLOW_TESTS} deselected" in tests.stdout, tests.stdout[-3000:]


def test_installed_project_workflow_and_its_output_checks(minimal, minimal_ci, installed):
    smoke = minimal_ci["workflow"]
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-5000:]
    checks = minimal_ci["outputs"]
    assert checks.returncode == 0, checks.stdout[-3000:] + checks.stderr[-3000:]
    assert re.search(rf"\b{WORKFLOW_TESTS} passed, {UNIT_TESTS} deselected", checks.stdout), (
        checks.stdout[-3000:]
    )
    results = minimal / "results/dimuon_search"
    assert (results / "histograms/plots/mass.png").stat().st_size > 10_000
    record = json.loads(run_cli("info", str(results / "histograms/merged.pkl"), cwd=minimal,
                                env=installed).stdout)  # fmt: skip
    assert record["stage"] == "dimuon_search::histograms"
    assert record["variant"] == ["cpu"]
    # Every REANA output is one the workflow writes.
    reana = yaml.safe_load((minimal / "reana.yaml").read_text())["outputs"]
    for path in reana["files"] + reana["directories"]:
        assert (minimal / path).exists(), path
    # Run again: nothing to do.
    again = run_in(minimal, installed, snakemake_exe(), "--profile", "profiles/local", "-n")
    assert job_stats(again.stdout + again.stderr) == {}, again.stdout[-3000:]


@pytest.fixture(scope="module")
def older_engine_runs(tmp_path_factory, installed) -> dict[str, Path]:
    """The minimal project, rendered anew for each, run as its CI runs its workflow by
    Snakemake 7.32.4 and 8.27.1 (REANA's engines: .venv-snakemake7/, .venv-snakemake8/,
    built by environment/envs.py), with the project's package installed as for Snakemake 9."""
    sys.path.insert(0, str(REPO / "environment"))
    import envs

    runs = {}
    for name, version in (("snakemake7", "7.32.4"), ("snakemake8", "8.27.1")):
        bin_dir = envs.ensure(name) / "bin"
        project = render(tmp_path_factory.mktemp(name), **MINIMAL)
        env = {**installed, "PATH": f"{bin_dir}:{installed['PATH']}"}
        env.pop("VIRTUAL_ENV", None)
        assert run_in(project, env, "snakemake", "--version").stdout.strip() == version
        proc = run_in(project, env, "snakemake", "--profile", "profiles/local", "--cores", "2")
        assert proc.returncode == 0, f"{name}:\n{proc.stdout[-3000:]}{proc.stderr[-5000:]}"
        runs[f"Snakemake {version}"] = project
    return runs


def test_the_workflow_gives_the_same_bytes_under_snakemake_7_8_and_9(
    minimal, minimal_ci, older_engine_runs
):
    # Every result (results/ but the logs, run records and the crate) and every generated
    # input: the CI's Snakemake 9 run and those of REANA's engines, byte for byte.
    assert minimal_ci["workflow"].returncode == 0
    assert_same_results({"Snakemake 9": minimal, **older_engine_runs})


def test_installed_project_switches_to_real_files_as_its_docs_say(minimal, minimal_ci, installed):
    # Real NanoAOD files in data/real/DATASET/ (here: the generated ones, under the names
    # of datasets/metadata.yaml), the fileset written with the command the config gives.
    assert minimal_ci["workflow"].returncode == 0
    example = read_fileset(minimal / "datasets/fileset.json")
    for name, ds in example.items():
        # The toy's datasets are named as the example's processes.
        source = minimal / "data/generated" / ds.metadata["process"]
        target = minimal / "data/real" / name
        target.mkdir(parents=True)
        (target / "nano_0.root").symlink_to(next(source.glob("*.root")))
    config = (minimal / "config/config.yaml").read_text()
    command = re.search(r"`(swift-rules fileset [^`]*)`", config.replace("\n  # ", " ")).group(1)
    written = run_in(minimal, installed, "bash", "-c", command)
    assert written.returncode == 0, written.stderr
    real = read_fileset(minimal / "datasets/fileset.json")
    assert {n: d.metadata for n, d in real.items()} == {n: d.metadata for n, d in example.items()}
    # The switch the config describes: the same stages over the real datasets.
    switch = "data={source: fileset, fileset: datasets/fileset.json}"
    dry = run_in(minimal, installed, snakemake_exe(), "--profile", "profiles/local", "-n",
                 "--config", switch)  # fmt: skip
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    jobs = job_stats(dry.stdout)
    assert jobs["swift_skim"] == 3 and jobs["swift_process"] == 3, jobs
    assert "swift_generate" not in jobs
    assert "results/dimuon_search/skim/skims/DoubleMuon_Run2016H/group0000.parquet" in dry.stdout


@pytest.mark.filterwarnings("ignore:Branch Photon_.* already exists:RuntimeWarning")  # coffea's
def test_installed_project_stages_read_real_nanoaod(minimal, installed, tmp_path, monkeypatch):
    # The template's stages on CMS simulation (real branch types: nMuon is uint32 there),
    # as the workflow's jobs run them: Drell-Yan events with a Z -> mu mu pair.
    from swift_rules.registry import StageRegistry
    from swift_rules.runner import run_stage

    dy = nanoaod_file("nano_dy.root")
    monkeypatch.syspath_prepend(installed["PYTHONPATH"].split(os.pathsep)[0])
    registry = StageRegistry(builtins=False)
    registry.register_yaml(minimal / "registry.yaml")
    meta = {"is_data": False, "process": "signal", "xsec": 6077.22}
    common = {"registry": registry, "sample_metadata": meta, "progress": False}
    skim = tmp_path / "skim.pkl"
    run_stage("dimuon_search::skim", "DY", [str(dy)], skim, stage_config={"skim": True},
              **common)  # fmt: skip
    output, record = run_stage("dimuon_search::histograms", "DY", [str(skim.with_suffix(
        ".parquet"))], tmp_path / "histograms.pkl", stage_config={"schema": "nanoaod"},
        **common)  # fmt: skip
    assert record["source_events"] == {"DY": 40}
    mass = output["mass"][{"process": "signal"}]
    assert mass.sum().value > 0
    assert mass[hist.loc(80.0) : hist.loc(100.0) : sum].value == mass.sum().value  # a Z


def test_installed_gpu_project_unit_tests(gpu_project, installed):
    unit_tests, smoke_test, checks = ci_commands(gpu_project)  # GitLab CI: the same commands
    assert (unit_tests, checks) == ("python -m pytest", "python -m pytest -m workflow")
    assert "snakemake --profile profiles/local" in smoke_test
    tests = run_in(gpu_project, installed, "bash", "-c", unit_tests)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    usable, why = gpu_status()
    total = UNIT_TESTS + GPU_TESTS
    if usable:
        assert f"{total} passed" in tests.stdout, tests.stdout[-3000:]
    else:  # the GPU parity tests skip, and say why
        passed = f"{total - GPU_ONLY_TESTS} passed, {GPU_ONLY_TESTS} skipped"
        assert passed in tests.stdout, tests.stdout[-3000:]
        assert f"no usable GPU here: {why}" in tests.stdout


def test_installed_project_dirac_profile_dry_run(gpu_project, installed):
    # The profile's settings are accepted by the installed executor plugin, and the
    # project's workflow is planned with it; nothing is submitted. (The htcondor and k8s
    # profiles, the same files as swift-rules' own, run in test_htcondor/test_kubernetes.)
    dry = run_in(gpu_project, installed, snakemake_exe(), "--profile=profiles/dirac", "-n")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-5000:]
    assert "Using profile profiles/dirac" in dry.stdout + dry.stderr
    # Four generated files (signal 1, background 2, data 1): four jobs of each stage.
    jobs = job_stats(dry.stdout)
    assert (jobs["swift_generate"], jobs["swift_skim"], jobs["swift_process"]) == (4, 4, 4), jobs
    assert jobs["yields"] == 1


def test_installed_project_slurm_profile_dry_run(gpu_project, installed):
    # As for dirac: the installed Slurm plugin accepts the rendered profile (no cluster).
    dry = run_in(gpu_project, installed, snakemake_exe(), "--profile=profiles/slurm", "-n")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-5000:]
    assert "Using profile profiles/slurm" in dry.stdout + dry.stderr
    jobs = job_stats(dry.stdout)
    assert (jobs["swift_generate"], jobs["swift_skim"], jobs["swift_process"]) == (4, 4, 4), jobs


def test_slurm_project(tmp_path):
    project = render(tmp_path, backends="local+slurm", ci="none", swift_rules_source="path")
    assert files_of(project) == expected_files("dimuon_search", {"profiles/slurm/config.yaml"})
    assert (project / "profiles/slurm/config.yaml").read_text() == (
        REPO / "profiles/slurm/config.yaml"
    ).read_text()
    assert "`profiles/slurm`" in (project / "README.md").read_text()
    pyproject = (project / "pyproject.toml").read_text()
    assert f'"swift-rules[workflow,slurm] @ file://{REPO}"' in pyproject


def test_dirac_project(tmp_path):
    project = render(tmp_path, backends="local+dirac", ci="none", swift_rules_source="path")
    assert files_of(project) == expected_files("dimuon_search", {"profiles/dirac/config.yaml"})
    assert "`profiles/dirac`" in (project / "README.md").read_text()
    pyproject = (project / "pyproject.toml").read_text()
    assert f'"swift-rules[workflow,dirac] @ file://{REPO}"' in pyproject


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"git {args}: {out.stderr}"
    return out.stdout


def cruft(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("cruft") or str(Path(sys.executable).with_name("cruft"))
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)


def test_cruft_update_brings_template_changes_and_keeps_user_edits(tmp_path):
    # The template in a git repository of its own, in the layout of swift-rules' repo.
    upstream = tmp_path / "upstream"
    shutil.copytree(TEMPLATE, upstream / "cookiecutter-template")
    git(upstream, "init", "-q")
    git(upstream, "add", ".")
    git(upstream, "commit", "-q", "-m", "template v1")

    context = {"analysis_name": "Dimuon Search", "swift_rules_source": "path",
               "swift_rules_path": str(REPO)}  # fmt: skip
    created = cruft(
        tmp_path, "create", upstream.as_uri(), "--directory", "cookiecutter-template",
        "--no-input", "--output-dir", "out", "--extra-context", json.dumps(context),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    project = tmp_path / "out" / "dimuon_search"
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "From the template")
    # The user's own edit, in a file that the template will change too.
    config = project / "config/config.yaml"
    config.write_text(config.read_text().replace("min_muon_pt: 20.0", "min_muon_pt: 25.0"))
    git(project, "commit", "-q", "-am", "A tighter cut")
    assert cruft(project, "check").returncode == 0

    # A newer template: a changed line in that same file, and a new file.
    skeleton = upstream / "cookiecutter-template" / "{{cookiecutter.package_name}}"
    template_config = skeleton / "config/config.yaml"
    text = template_config.read_text()
    assert "chunksize: 100000" in text
    template_config.write_text(text.replace("chunksize: 100000", "chunksize: 50000"))
    (skeleton / "NOTES.md").write_text("# Notes on {{ cookiecutter.analysis_name }}\n")
    git(upstream, "add", ".")
    git(upstream, "commit", "-q", "-m", "template v2")

    check = cruft(project, "check")
    assert check.returncode != 0 and "out of date" in check.stdout, check.stdout + check.stderr
    update = cruft(project, "update", "--skip-apply-ask")
    assert update.returncode == 0, update.stdout + update.stderr
    assert (project / "NOTES.md").read_text() == "# Notes on Dimuon Search\n"
    updated = config.read_text()
    assert "chunksize: 50000" in updated and "min_muon_pt: 25.0" in updated
    assert "chunksize: 100000" not in updated
    assert not list(project.rglob("*.rej"))
    v2 = git(upstream, "rev-parse", "HEAD").strip()
    assert json.loads((project / ".cruft.json").read_text())["commit"] == v2
    assert cruft(project, "check").returncode == 0

"""The cookiecutter template: rendered for several answers; rendered projects installed with
pip and their own tests and smoke test run, as their CI would; a template update with cruft."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli, snakemake_exe

from swift_rules.device import gpu_status

pytestmark = pytest.mark.slow

cookiecutter_main = pytest.importorskip("cookiecutter.main")
from cookiecutter.exceptions import FailedHookException  # noqa: E402

TEMPLATE = REPO / "cookiecutter-template"


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


def assert_fully_rendered(project: Path) -> None:
    for path in project.rglob("*"):
        assert "cookiecutter" not in str(path.relative_to(project)), path
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text and "{%" not in text, path


@pytest.fixture(scope="module")
def minimal(tmp_path_factory) -> Path:
    """Local profile only, no GPU variant, GitHub CI, swift-rules from this checkout."""
    return render(
        tmp_path_factory.mktemp("minimal"),
        backends="local", gpu_variant="no", ci="github", swift_rules_source="path",
    )  # fmt: skip


def test_minimal_project(minimal):
    assert minimal.name == "dimuon_search"
    files = files_of(minimal)
    assert {
        "pyproject.toml", "README.md", "reana.yaml", "stages.yaml", "workflow/Snakefile",
        "config/config.yaml", "profiles/local/config.yaml", ".github/workflows/ci.yml",
        "src/dimuon_search/__init__.py", "src/dimuon_search/stages.py",
        "tests/test_stages.py",
    } <= files  # fmt: skip
    assert not any(
        f.startswith(("profiles/htcondor", "profiles/k8s", "profiles/dirac")) for f in files
    )
    assert ".gitlab-ci.yml" not in files
    assert "src/dimuon_search/stages_gpu.py" not in files
    assert_fully_rendered(minimal)
    registry = yaml.safe_load((minimal / "stages.yaml").read_text())
    assert registry == {
        "register": {"dimuon_search::njets": {"cpu": "dimuon_search.stages:JetMultiplicity"}}
    }
    pyproject = (minimal / "pyproject.toml").read_text()
    assert f'"swift-rules[workflow] @ file://{REPO}"' in pyproject
    snakefile = (minimal / "workflow/Snakefile").read_text()
    assert 'include: rules_path("stages.smk")' in snakefile
    assert "rule swift_process" not in snakefile  # included, not copied
    assert (minimal / "profiles/local/config.yaml").read_text() == (
        REPO / "profiles/local/config.yaml"
    ).read_text()
    ci = (minimal / ".github/workflows/ci.yml").read_text()
    assert "snakemake --profile profiles/local --cores 2" in ci and "pytest" in ci


def test_full_project_from_repo_root(tmp_path):
    project = render(
        tmp_path, from_repo_root=True, namespace="mu", backends="all", gpu_variant="yes",
        ci="both", swift_rules_source="git",
    )  # fmt: skip
    files = files_of(project)
    for name in ("htcondor", "k8s", "dirac"):
        assert (project / "profiles" / name / "config.yaml").read_text() == (
            REPO / "profiles" / name / "config.yaml"
        ).read_text()
    assert {".github/workflows/ci.yml", ".gitlab-ci.yml", "src/dimuon_search/stages_gpu.py"} <= (
        files
    )
    assert_fully_rendered(project)
    registry = yaml.safe_load((project / "stages.yaml").read_text())
    assert registry["register"]["mu::njets"] == {
        "cpu": "dimuon_search.stages:JetMultiplicity",
        "gpu": "dimuon_search.stages_gpu:JetMultiplicityGPU",
    }
    pyproject = (project / "pyproject.toml").read_text()
    assert (
        "swift-rules[workflow,htcondor,kubernetes,dirac] @ git+https://github.com/swift/swift-rules@v0.1.0"
        in (pyproject)
    )
    config = yaml.safe_load((project / "config/config.yaml").read_text())
    assert "mu::njets" in config["stages"]
    reana = yaml.safe_load((project / "reana.yaml").read_text())
    assert reana["outputs"]["files"] == ["results/mu/njets/merged.pkl"]


def test_pypi_project_with_htcondor(tmp_path):
    project = render(tmp_path, backends="local+htcondor", ci="gitlab", swift_rules_source="pypi")
    files = files_of(project)
    assert "profiles/htcondor/config.yaml" in files
    assert not any(f.startswith(("profiles/k8s", "profiles/dirac", ".github")) for f in files)
    assert ".gitlab-ci.yml" in files
    pyproject = (project / "pyproject.toml").read_text()
    assert '"swift-rules[workflow,htcondor]>=0.1"' in pyproject
    assert "allow-direct-references" not in pyproject


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
    return {**os.environ, "PYTHONPATH": str(target), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


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


def test_gpu_project(gpu_project):
    files = files_of(gpu_project)
    assert {"src/muon_jets/stages_gpu.py", "tests/test_stages_gpu.py", ".gitlab-ci.yml"} <= files
    assert_fully_rendered(gpu_project)
    registry = yaml.safe_load((gpu_project / "stages.yaml").read_text())
    assert registry["register"]["mu::njets"] == {
        "cpu": "muon_jets.stages:JetMultiplicity",
        "gpu": "muon_jets.stages_gpu:JetMultiplicityGPU",
    }
    pyproject = (gpu_project / "pyproject.toml").read_text()
    assert '"swift-rules[workflow,htcondor,kubernetes,dirac] @ file://' in pyproject
    assert 'gpu = ["cupy-cuda12x>=13"]' in pyproject


def test_installed_project_unit_tests_and_smoke_test(minimal, installed):
    code = "import dimuon_search; print(dimuon_search.__file__)"
    where = run_in(minimal, installed, sys.executable, "-c", code)
    assert where.stdout.startswith(installed["PYTHONPATH"]), where.stdout + where.stderr

    # The CI's own commands, with this environment's `python` and `snakemake`.
    unit_tests, smoke_test = ci_commands(minimal)
    assert (unit_tests, smoke_test) == (
        "python -m pytest", "snakemake --profile profiles/local --cores 2"
    )  # fmt: skip
    tests = run_in(minimal, installed, "bash", "-c", unit_tests)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "6 passed" in tests.stdout, tests.stdout[-3000:]

    smoke = run_in(minimal, installed, "bash", "-c", smoke_test)
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-5000:]
    merged = "results/dimuon_search/njets/merged.pkl"
    record = json.loads(run_cli("info", merged, cwd=minimal, env=installed).stdout)
    assert record["stage"] == "dimuon_search::njets"
    assert record["variant"] == ["cpu"]
    assert record["events"] == {"ttbar__nominal": 1000, "wjets__nominal": 500}


def test_installed_gpu_project_unit_tests(gpu_project, installed):
    unit_tests, smoke_test = ci_commands(gpu_project)  # GitLab CI: the same commands
    assert "pytest" in unit_tests and "snakemake --profile profiles/local" in smoke_test
    tests = run_in(gpu_project, installed, "bash", "-c", unit_tests)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    usable, why = gpu_status()
    if usable:
        assert "12 passed" in tests.stdout, tests.stdout[-3000:]
    else:  # the GPU parity tests skip, and say why
        assert "8 passed, 4 skipped" in tests.stdout, tests.stdout[-3000:]
        assert f"no usable GPU here: {why}" in tests.stdout


def test_installed_project_dirac_profile_dry_run(gpu_project, installed):
    # The profile's settings are accepted by the installed executor plugin, and the
    # project's workflow is planned with it; nothing is submitted. (The htcondor and k8s
    # profiles, the same files as swift-rules' own, run in test_htcondor/test_kubernetes.)
    dry = run_in(gpu_project, installed, snakemake_exe(), "--profile=profiles/dirac", "-n")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-5000:]
    assert "Using profile profiles/dirac" in dry.stdout + dry.stderr
    assert re.search(r"^swift_process\s+3$", dry.stdout, re.MULTILINE), dry.stdout[-3000:]


def test_dirac_project(tmp_path):
    project = render(tmp_path, backends="local+dirac", ci="none", swift_rules_source="path")
    files = files_of(project)
    assert "profiles/dirac/config.yaml" in files
    assert not any(
        f.startswith(("profiles/htcondor", "profiles/k8s", ".github", ".gitlab")) for f in files
    )
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
    config.write_text(config.read_text().replace("min_pt: 25.0", "min_pt: 30.0"))
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
    assert "chunksize: 50000" in updated and "min_pt: 30.0" in updated
    assert not list(project.rglob("*.rej"))
    v2 = git(upstream, "rev-parse", "HEAD").strip()
    assert json.loads((project / ".cruft.json").read_text())["commit"] == v2
    assert cruft(project, "check").returncode == 0

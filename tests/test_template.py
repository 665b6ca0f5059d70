"""The cookiecutter template: rendered for several answers, and one rendered project run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli, snakemake_exe

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
    assert not any(f.startswith(("profiles/htcondor", "profiles/k8s")) for f in files)
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
    for name in ("htcondor", "k8s"):
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
    assert "swift-rules[workflow] @ git+https://github.com/swift/swift-rules@v0.1.0" in pyproject
    config = yaml.safe_load((project / "config/config.yaml").read_text())
    assert "mu::njets" in config["stages"]
    reana = yaml.safe_load((project / "reana.yaml").read_text())
    assert reana["outputs"]["files"] == ["results/mu/njets/merged.pkl"]


def test_pypi_project_with_htcondor(tmp_path):
    project = render(tmp_path, backends="local+htcondor", ci="gitlab", swift_rules_source="pypi")
    files = files_of(project)
    assert "profiles/htcondor/config.yaml" in files
    assert not any(f.startswith(("profiles/k8s", ".github")) for f in files)
    assert ".gitlab-ci.yml" in files
    pyproject = (project / "pyproject.toml").read_text()
    assert '"swift-rules[workflow]>=0.1"' in pyproject
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


def test_rendered_project_tests_and_smoke_test_pass(minimal):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(minimal / "src"), str(REPO)])}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=minimal, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "3 passed" in tests.stdout

    smoke = subprocess.run(
        [snakemake_exe(), "--profile", "profiles/local", "--cores", "2"],
        cwd=minimal, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-5000:]
    merged = "results/dimuon_search/njets/merged.pkl"
    record = json.loads(run_cli("info", merged, cwd=minimal).stdout)
    assert record["stage"] == "dimuon_search::njets"
    assert record["events"] == {"ttbar__nominal": 1000, "wjets__nominal": 500}

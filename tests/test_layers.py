"""The layers of the package, read from the source: the generic layer knows no analysis."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "swift_rules"
# An analysis is a subpackage with a registry.yaml (its stages, generator, fileset).
ANALYSES = sorted(p.parent.name for p in PACKAGE.glob("*/registry.yaml"))
NAMES = re.compile(r"\bagc\b|ttbar|tautau|\bhtt\b|higgs", re.I)


def generic_files(*suffixes: str) -> list[Path]:
    return [
        p for p in sorted(PACKAGE.rglob("*"))
        if p.suffix in suffixes and p.relative_to(PACKAGE).parts[0] not in ANALYSES
    ]  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_the_reference_analyses_are_packages_beside_the_generic_layer():
    assert "agc" in ANALYSES


def test_no_generic_module_imports_an_analysis():
    leaks = {
        str(path.relative_to(REPO)): sorted(
            m for m in imported_modules(path)
            if any(m == f"swift_rules.{a}" or m.startswith(f"swift_rules.{a}.") for a in ANALYSES)
        )
        for path in generic_files(".py")
    }  # fmt: skip
    assert {k: v for k, v in leaks.items() if v} == {}


def test_no_generic_file_names_an_analysis():
    named = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in generic_files(".py", ".smk")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if NAMES.search(line)
    ]
    assert named == []


RULE_IMPORT = re.compile(r"^\s*(?:from|import)\s+(swift_rules[\w.]*)", re.M)


def test_the_generic_rule_files_import_one_module_of_ours():
    imported = {
        path.name: sorted(set(RULE_IMPORT.findall(path.read_text())))
        for path in sorted((PACKAGE / "rules").glob("*.smk"))
    }
    assert imported["stages.smk"] == ["swift_rules.workflow"]
    assert all(found in ([], ["swift_rules.workflow"]) for found in imported.values()), imported


def test_an_analysis_rule_file_imports_only_its_own_package():
    for analysis in ANALYSES:
        for path in (PACKAGE / analysis).glob("*.smk"):
            found = set(RULE_IMPORT.findall(path.read_text()))
            assert all(m.startswith(f"swift_rules.{analysis}") for m in found), (path, found)


def test_what_the_rule_files_import_loads_no_event_processing_library():
    # Parsing a workflow must stay fast: Snakemake parses it at every start, and on
    # every cluster node that runs a job.
    import subprocess
    import sys

    modules = ["swift_rules.workflow"] + [f"swift_rules.{a}.config" for a in ANALYSES]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "heavy = ('coffea', 'uproot', 'awkward', 'dask', 'distributed', 'numpy', 'numba')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_public_api_resolves_and_imports_nothing_at_once():
    import importlib
    import subprocess
    import sys

    import swift_rules

    for name in swift_rules.__all__:
        assert getattr(swift_rules, name) is not None, name
    for module in ("registry", "results", "datasets", "export", "generation", "runner",
                   "workflow"):  # fmt: skip
        mod = importlib.import_module(f"swift_rules.{module}")
        assert all(hasattr(mod, n) for n in mod.__all__), module
    # `import swift_rules` (every job's client does it) loads none of its modules.
    code = (
        "import sys, swift_rules\n"
        "print(sorted(m for m in sys.modules if m.startswith('swift_rules.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

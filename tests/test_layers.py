"""The layers of the package, read from the source: no import cycles (function-level
imports included), the broker's server knows nothing of the Dask clusters, the generic
layer knows no analysis."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
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


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The module of ours that importing ``name`` loads last (a name inside a module is
    the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The modules of ours that ``module`` imports anywhere in its source (at the top and
    inside functions), relative imports resolved. A submodule's import of its own package
    is left out: importing the submodule runs the package's ``__init__`` first anyway."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.startswith("swift_rules") else None
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm, without recursion)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_import_walk_sees_function_level_and_relative_imports():
    assert "swift_rules.cli" in GRAPH["swift_rules.warmstart.server"]  # inside a function
    assert "swift_rules.backends.base" in GRAPH["swift_rules.backends.htcondor"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize(
    "module", ["swift_rules.broker.server", "swift_rules.broker.protocol", "swift_rules.broker.cli"]
)
def test_the_brokers_server_and_protocol_import_nothing_of_the_dask_clusters(module):
    """The broker runs on a host of its own (``swift-rules broker serve``): nothing of the
    backends, the runner or Dask. The client side lives in swift_rules.backends."""
    below = reachable(GRAPH, module)
    assert not {m for m in below if m.startswith("swift_rules.backends")}, below
    assert below <= {"swift_rules.broker", "swift_rules.broker.protocol",
                     "swift_rules.broker.server", "swift_rules.broker.splice",
                     "swift_rules.errors"}, below  # fmt: skip


def test_the_backends_import_nothing_above_them():
    """The Dask clusters are a layer below the runner and the command line."""
    above = ("swift_rules.runner", "swift_rules.cli", "swift_rules.workflow",
             "swift_rules.warmstart")  # fmt: skip
    for module in (m for m in MODULES if m.startswith("swift_rules.backends")):
        below = reachable(GRAPH, module)
        assert not {m for m in below if m.startswith(above)}, (module, below)


def test_the_warm_start_client_does_not_import_the_command_line():
    """The CLI's main calls the client half; the server half runs the CLI."""
    assert not {m for m in reachable(GRAPH, "swift_rules.warmstart.client")
                if m.startswith("swift_rules.cli")}  # fmt: skip
    assert "swift_rules.warmstart.server" not in reachable(GRAPH, "swift_rules.cli")


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

"""Fingerprints of stage code and config, for Snakemake's params-based rerun trigger.

Snakemake sees files, not code inside an installed package. So the rule's params
carry a hash of the source of the variant(s) that will run and of every module
"of ours" that they import: modules of the same top-level package, of
``swift_rules``, or anywhere outside the Python installation and outside any
``site-packages`` folder (a user's modules next to the workflow, editable installs;
not an LCG view's packages on PYTHONPATH). Imports are found by parsing the source:
nothing is imported, so planning a workflow stays fast.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import sysconfig
from collections.abc import Iterable
from pathlib import Path

# Where installed third-party code and the standard library live: not "ours".
_INSTALLED = {
    Path(sysconfig.get_path(name)).resolve()
    for name in ("stdlib", "platstdlib", "purelib", "platlib")
}


def _is_local(origin: Path) -> bool:
    origin = origin.resolve()
    # Installed elsewhere counts as installed too: an LCG view on CVMFS, or another
    # environment's packages, reach sys.path through PYTHONPATH or a .pth file.
    if any(part in ("site-packages", "dist-packages") for part in origin.parts):
        return False
    return not any(p == origin or p in origin.parents for p in _INSTALLED)


def find_module(name: str) -> Path | None:
    """Source file of module ``name`` without importing it (None: not found)."""
    return _spec_origin(name)


def _spec_origin(name: str) -> Path | None:
    # importlib.util.find_spec("a.b.c") imports a.b to look inside it, and `from a.b
    # import c` must be checked for a submodule c: that would import a stage (and
    # coffea) at planning time. So only the top-level name goes through the import
    # system's finders (which import nothing); submodules are looked up in their
    # parent package's folders.
    top, *parts = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
        for part in parts:
            if spec is None or spec.submodule_search_locations is None:
                return None  # not a package: it has no submodules
            spec = importlib.machinery.PathFinder.find_spec(part, spec.submodule_search_locations)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    names = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def module_closure(modules: Iterable[str], roots: Iterable[str]) -> dict[str, Path]:
    """Source files of ``modules`` and of what they import within ``roots`` packages."""
    roots = set(roots)
    foreign: set[str] = set()
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        top = name.partition(".")[0]
        if name in seen or top in foreign:
            continue
        if top not in roots:
            # Look at the top-level module only (finding it imports nothing), so that
            # third-party packages are never imported here.
            top_origin = _spec_origin(top)
            if top_origin is None or not _is_local(top_origin):
                foreign.add(top)
                continue
            roots.add(top)
        origin = _spec_origin(name)
        if origin is None:
            continue
        seen[name] = origin
        todo.extend(_imports(origin, name))
    return seen


# What each source file imports, by (path, modification time, size, module): parsing is
# most of a fingerprint's time, so a warm-start server parses swift_rules' own modules
# once (remember_imports) and its jobs parse only theirs. The hash reads every file anew.
_parsed: dict[tuple[str, int, int, str], frozenset[str]] = {}


def _imports(origin: Path, module: str) -> frozenset[str]:
    st = origin.stat()
    key = (str(origin), st.st_mtime_ns, st.st_size, module)
    if key not in _parsed:
        tree = ast.parse(origin.read_bytes(), filename=str(origin))
        _parsed[key] = frozenset(_imported_names(tree, module, origin.name == "__init__.py"))
    return _parsed[key]


def remember_imports(package: str) -> None:
    """Parse every module of ``package`` now, without importing any."""
    origin = _spec_origin(package)
    if origin is None or origin.name != "__init__.py":
        return
    for path in sorted(origin.parent.rglob("*.py")):
        parts = [package, *path.relative_to(origin.parent).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        _imports(path, ".".join(parts))


def code_fingerprint(modules: Iterable[str]) -> str:
    """Hash of the source of ``modules`` and the modules of ours they import."""
    modules = list(modules)
    roots = {m.split(".")[0] for m in modules} | {"swift_rules"}
    digest = hashlib.sha256()
    for name, path in sorted(module_closure(modules, roots).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]

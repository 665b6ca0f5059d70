"""The registry: what analyses register with the toolkit, by name.

- **Stages**: ``namespace::stage`` mapped to CPU and GPU variants. A variant is a
  coffea processor class named by import path (``module:Class`` or ``module.Class``).
- **Generators**: ``namespace::name`` mapped to a class that writes generated input
  files of an analysis' datasets (``data.source: generated``).
- **Filesets**: a short name for a fileset file an analysis ships.

Registrations come from YAML (``register:``, ``generators:``, ``filesets:``
sections), from a package's ``registry.yaml`` (config ``registries: [pkg.name]``),
from Python (``register_stage``), or from installed packages (the
``swift_rules.stages`` entry-point group). Every registration remembers where it
came from, so that conflicts and bad paths can be reported precisely. Nothing is
imported until a variant is loaded: listing and fingerprinting stay cheap.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from swift_rules.errors import SwiftError

__all__ = [
    "REGISTRY",
    "RegistryError",
    "Stage",
    "StageRegistry",
    "Variant",
    "load_registrations",
    "register_stage",
]

DEVICES = ("cpu", "gpu")
NAME_PATTERN = re.compile(r"^[A-Za-z_][\w.-]*::[A-Za-z_][\w.-]*$")
ENTRY_POINT_GROUP = "swift_rules.stages"
REGISTRY_FILE = "registry.yaml"  # a package's registrations (config `registries`)
SECTIONS = ("register", "generators", "filesets")


@functools.cache
def installed_entry_points(group: str) -> tuple[metadata.EntryPoint, ...]:
    """The installed packages' entry points of ``group``. Reading every package's
    metadata takes ~10 ms: a warm-start server reads it once for all its jobs (a package
    installed while it serves is seen by the next Snakemake run)."""
    eps = metadata.entry_points()
    # Python 3.8 (REANA 0.9's engine) returns a dict of groups.
    return tuple(eps.select(group=group) if hasattr(eps, "select") else eps.get(group, []))


class RegistryError(SwiftError):
    """A stage name, registration or import path is wrong."""


@dataclass(frozen=True)
class Variant:
    """One implementation of a stage: an import path and where it was registered."""

    target: str
    source: str

    @property
    def module(self) -> str:
        return split_target(self.target)[0]

    def load(self) -> type:
        module_name, attr = split_target(self.target)
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise RegistryError(
                f"cannot import module {module_name!r} of {self.target!r} "
                f"(registered in {self.source}): {err}"
            ) from err
        obj = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise RegistryError(
                    f"module {module_name!r} has no attribute {attr!r} "
                    f"(import path {self.target!r}, registered in {self.source})"
                ) from None
        return obj


@dataclass
class Stage:
    name: str
    variants: dict[str, Variant] = field(default_factory=dict)


def split_target(target: str) -> tuple[str, str]:
    """``pkg.mod:Class`` or ``pkg.mod.Class`` -> (``pkg.mod``, ``Class``)."""
    if ":" in target:
        module, _, attr = target.partition(":")
    else:
        module, _, attr = target.rpartition(".")
    if not module or not attr:
        raise RegistryError(f"import path {target!r} is not of the form 'module:Class'")
    return module, attr


class StageRegistry:
    """All known stages. ``get`` loads built-ins and entry points on first use."""

    def __init__(self, builtins: bool = True):
        self._stages: dict[str, Stage] = {}
        self._generators: dict[str, Variant] = {}
        self._filesets: dict[str, tuple[Path, str]] = {}
        self._defaults_loaded = not builtins

    def register(
        self, name: str, *, cpu: str | None = None, gpu: str | None = None, source: str
    ) -> Stage:
        if not NAME_PATTERN.match(name):
            raise RegistryError(
                f"stage name {name!r} (in {source}) is not of the form 'namespace::stage'"
            )
        variants = {dev: t for dev, t in (("cpu", cpu), ("gpu", gpu)) if t is not None}
        if not variants:
            raise RegistryError(f"stage {name!r} (in {source}) names no 'cpu' or 'gpu' variant")
        stage = self._stages.setdefault(name, Stage(name))
        for device, target in variants.items():
            if not isinstance(target, str):
                raise RegistryError(
                    f"stage {name!r} {device} variant in {source} must be an import path "
                    f"string, got {target!r}"
                )
            split_target(target)
            old = stage.variants.get(device)
            if old is not None and old.target != target:
                raise RegistryError(
                    f"stage {name!r} has two {device} variants: {old.target!r} registered in "
                    f"{old.source}, and {target!r} registered in {source}"
                )
            if old is None:
                stage.variants[device] = Variant(target, source)
        return stage

    def register_mapping(self, mapping: Mapping, source: str) -> None:
        """Register the stages of a ``register:`` mapping (``name: {cpu:, gpu:}``)."""
        if not isinstance(mapping, Mapping):
            raise RegistryError(f"'register' in {source} must be a mapping of stage names")
        for name, variants in mapping.items():
            if isinstance(variants, str):
                variants = {"cpu": variants}
            if not isinstance(variants, Mapping):
                raise RegistryError(
                    f"stage {name!r} in {source} must map 'cpu'/'gpu' to import paths"
                )
            unknown = set(variants) - set(DEVICES)
            if unknown:
                raise RegistryError(
                    f"stage {name!r} in {source} has unknown key(s) {sorted(unknown)}; "
                    f"allowed: {list(DEVICES)}"
                )
            self.register(name, source=source, **variants)

    def register_generator(self, name: str, target: str, source: str) -> None:
        if not NAME_PATTERN.match(name):
            raise RegistryError(
                f"generator name {name!r} (in {source}) is not of the form 'namespace::name'"
            )
        if not isinstance(target, str):
            raise RegistryError(f"generator {name!r} in {source} must be an import path string")
        split_target(target)
        old = self._generators.get(name)
        if old is not None and old.target != target:
            raise RegistryError(
                f"generator {name!r} is registered twice: {old.target!r} in {old.source}, "
                f"and {target!r} in {source}"
            )
        self._generators.setdefault(name, Variant(target, source))

    def register_fileset(self, name: str, path: Path, source: str) -> None:
        old = self._filesets.get(name)
        if old is not None and old[0] != path:
            raise RegistryError(
                f"fileset {name!r} is registered twice: {old[0]} in {old[1]}, "
                f"and {path} in {source}"
            )
        self._filesets[name] = (path, source)

    def register_document(self, doc: Mapping, source: str, base: Path | None = None) -> None:
        """Apply a registry document: ``register:``, ``generators:`` and ``filesets:``
        sections (fileset paths relative to ``base``)."""
        if not isinstance(doc, Mapping) or not any(k in doc for k in SECTIONS):
            raise RegistryError(f"{source} has none of the sections {', '.join(SECTIONS)}")
        unknown = sorted(set(doc) - set(SECTIONS))
        if unknown:
            raise RegistryError(f"{source} has unknown section(s) {unknown}; known: {SECTIONS}")
        self.register_mapping(doc.get("register") or {}, source=source)
        for section in ("generators", "filesets"):
            if not isinstance(doc.get(section) or {}, Mapping):
                raise RegistryError(f"'{section}' in {source} must be a mapping of names")
        for name, target in (doc.get("generators") or {}).items():
            self.register_generator(name, target, source)
        for name, path in (doc.get("filesets") or {}).items():
            if not isinstance(path, str):
                raise RegistryError(f"fileset {name!r} in {source} must be a path")
            self.register_fileset(name, (base or Path.cwd()) / path, source)

    def register_yaml(self, path: str | Path) -> None:
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise RegistryError(f"cannot read registrations from {path}: {err}") from err
        self.register_document(doc, source=str(path), base=path.parent)

    def register_package(self, package: str) -> None:
        """Apply the ``registry.yaml`` of an importable package (found, not imported)."""
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError) as err:
            raise RegistryError(
                f"cannot find package {package!r} (config registries): {err}"
            ) from None
        folders = list(spec.submodule_search_locations or []) if spec else []
        for folder in folders:
            if (Path(folder) / REGISTRY_FILE).is_file():
                self.register_yaml(Path(folder) / REGISTRY_FILE)
                return
        raise RegistryError(
            f"package {package!r} (config registries) "
            + (f"has no {REGISTRY_FILE}" if spec else "cannot be found: is it installed?")
        )

    def register_entry(self, entry: str, base: Path) -> None:
        """One item of config ``registries``: a YAML file (relative to ``base``) or a
        package name (``mypkg.analysis``) whose ``registry.yaml`` to apply."""
        if entry.endswith((".yaml", ".yml")) or "/" in entry:
            self.register_yaml(base / entry)
        else:
            self.register_package(entry)

    def _load_defaults(self) -> None:
        if self._defaults_loaded:
            return
        self._defaults_loaded = True
        for ep in installed_entry_points(ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.name!r} ({ep.value}) of {dist.name if dist else '?'}"
            obj = ep.load()
            if callable(obj):
                obj = obj()
            if isinstance(obj, (str, Path)):
                self.register_yaml(obj)
            elif isinstance(obj, Mapping) and any(k in obj for k in SECTIONS):
                self.register_document(obj, source=source)
            else:
                self.register_mapping(obj, source=source)

    def get(self, name: str) -> Stage:
        self._load_defaults()
        try:
            return self._stages[name]
        except KeyError:
            known = ", ".join(sorted(self._stages)) or "none"
            raise RegistryError(f"unknown stage {name!r}; registered stages: {known}") from None

    def names(self) -> list[str]:
        self._load_defaults()
        return sorted(self._stages)

    def generator(self, name: str) -> Variant:
        self._load_defaults()
        try:
            return self._generators[name]
        except KeyError:
            known = ", ".join(sorted(self._generators)) or "none"
            raise RegistryError(f"unknown generator {name!r}; registered: {known}") from None

    def generator_names(self) -> list[str]:
        self._load_defaults()
        return sorted(self._generators)

    def fileset(self, name: str) -> Path | None:
        """The file of a registered fileset name, or None."""
        self._load_defaults()
        entry = self._filesets.get(name)
        return entry[0] if entry else None


REGISTRY = StageRegistry()


def register_stage(name: str, device: str = "cpu", registry: StageRegistry | None = None):
    """Class decorator registering a processor as the ``device`` variant of ``name``.

    >>> @register_stage("mine::dimuon")
    ... class Dimuon(processor.ProcessorABC): ...
    """
    if device not in DEVICES:
        raise RegistryError(f"device must be one of {DEVICES}, got {device!r}")

    def decorate(cls: type) -> type:
        target = f"{cls.__module__}:{cls.__qualname__}"
        (registry or REGISTRY).register(
            name, source=f"Python module {cls.__module__}", **{device: target}
        )
        return cls

    return decorate


def load_registrations(config: Mapping, base: Path | None = None, registry=None) -> StageRegistry:
    """Apply a workflow config's ``registries:`` (YAML files, packages), ``register:``
    (stages) and ``generators:``."""
    registry = registry or REGISTRY
    base = base or Path.cwd()
    for entry in config.get("registries", []) or []:
        registry.register_entry(entry, base)
    source = config.get("_source", "config")
    if config.get("register"):
        registry.register_mapping(config["register"], source=source)
    for name, target in (config.get("generators") or {}).items():
        registry.register_generator(name, target, source)
    return registry

"""The stage registry: ``namespace::stage`` names mapped to CPU and GPU variants.

A variant is a coffea processor class named by import path (``module:Class`` or
``module.Class``). Registrations come from YAML (a ``register:`` mapping), from
Python (``register_stage``), or from installed packages (the
``swift_rules.stages`` entry-point group). Every registration remembers where it
came from, so that conflicts and bad paths can be reported precisely. Nothing is
imported until a variant is loaded: listing and fingerprinting stay cheap.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from swift_rules.errors import SwiftError

DEVICES = ("cpu", "gpu")
NAME_PATTERN = re.compile(r"^[A-Za-z_][\w.-]*::[A-Za-z_][\w.-]*$")
ENTRY_POINT_GROUP = "swift_rules.stages"
BUILTIN_REGISTRY = Path(__file__).with_name("stages.yaml")


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

    def register_yaml(self, path: str | Path) -> None:
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise RegistryError(f"cannot read stage registrations from {path}: {err}") from err
        if "register" not in doc:
            raise RegistryError(f"{path} has no 'register:' section")
        self.register_mapping(doc["register"], source=str(path))

    def _load_defaults(self) -> None:
        if self._defaults_loaded:
            return
        self._defaults_loaded = True
        self.register_yaml(BUILTIN_REGISTRY)
        eps = metadata.entry_points()
        # Python 3.8 (REANA 0.9's engine) returns a dict of groups.
        eps = (
            eps.select(group=ENTRY_POINT_GROUP)
            if hasattr(eps, "select")
            else eps.get(ENTRY_POINT_GROUP, [])
        )
        for ep in eps:
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.name!r} ({ep.value}) of {dist.name if dist else '?'}"
            obj = ep.load()
            if callable(obj):
                obj = obj()
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
    """Apply a workflow config's ``register:`` mapping and ``registries:`` YAML files."""
    registry = registry or REGISTRY
    base = base or Path.cwd()
    for entry in config.get("registries", []) or []:
        registry.register_yaml(base / entry)
    if config.get("register"):
        registry.register_mapping(config["register"], source=config.get("_source", "config"))
    return registry

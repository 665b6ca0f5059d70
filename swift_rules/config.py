"""The workflow config: JSON-schema validation with defaults and precise errors."""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from swift_rules.errors import SwiftError


def _import_jsonschema():
    """jsonschema, imported without rfc3987-syntax. When that package is installed
    (JupyterLab's jupyter-events asks for it), jsonschema imports it for its ``iri``
    format checks, and its import builds 38 lark grammars: 1.5 s in every Snakemake
    process that reads a workflow (python-jsonschema/jsonschema#1428). Our schemas check
    no formats; the package stays importable for whoever imports it later."""
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import jsonschema

        return jsonschema
    sys.modules["rfc3987_syntax"] = None  # (an ImportError, which jsonschema expects)
    try:
        import jsonschema
    finally:
        del sys.modules["rfc3987_syntax"]
    return jsonschema


jsonschema = _import_jsonschema()

SCHEMA_PATH = Path(__file__).with_name("schema") / "config.schema.yaml"


class ConfigError(SwiftError, ValueError):
    pass


@functools.lru_cache(maxsize=None)  # noqa: UP033 - Python 3.8 (REANA's engine)
def _schema_text_loaded() -> dict:
    # The C loader when PyYAML has it: planning a workflow parses this on every run.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(SCHEMA_PATH.read_text(), Loader=loader)


def schema() -> dict:
    """The config's JSON schema (a fresh copy: validation fills defaults in place)."""
    return copy.deepcopy(_schema_text_loaded())


def _with_defaults(validator_class):
    """A validator that also fills in schema defaults (as Snakemake's validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from validate_properties(validator, properties, instance, subschema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def validate(instance: Mapping, schema_doc: Mapping, source: str, prefix: str = "") -> dict:
    """A validated copy of ``instance`` with the schema's defaults filled in; errors name
    each key (under ``prefix``) and value."""
    instance = copy.deepcopy(dict(instance))
    # jsonschema 3 (REANA 0.9's Snakemake 7 stack, reana-client) has no 2020-12
    # validator; the schemas use nothing that draft 7 lacks.
    base = getattr(jsonschema, "Draft202012Validator", None) or jsonschema.Draft7Validator
    validator = _with_defaults(base)(schema_doc)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {prefix}{_where(e)}: {e.message}" for e in errors]
        raise ConfigError(f"invalid config in {source}:\n" + "\n".join(lines))
    return instance


def validate_config(config: Mapping, source: str = "config") -> dict:
    """Return a validated copy of ``config`` with defaults filled in."""
    return validate(config, schema(), source)


def validate_section(config: Mapping, key: str, schema_path: str | Path) -> dict:
    """Config section ``key`` (an analysis' own settings) checked against its schema."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schema_doc = yaml.load(Path(schema_path).read_text(), Loader=loader)
    return validate(config.get(key) or {}, schema_doc, config.get("_source", "config"), key + ".")


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping, got {type(raw).__name__}")
    return validate_config(raw, source=str(path))

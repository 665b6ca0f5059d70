"""MkDocs hooks: reference pages generated from the code at build time.

``<!-- config-reference -->`` becomes tables of every key of the workflow config, read
from ``swift_rules/schema/config.schema.yaml``; ``<!-- config-defaults -->`` the config
with every default filled in; ``<!-- config-example -->`` the reference workflow's
``config/config.yaml``; ``<!-- cli-reference -->`` the usage and help of every
``swift-rules`` subcommand, from ``swift_rules.cli.build_parser()``; ``<!-- api-reference
-->`` the signature and docstring of every name of the public API (``swift_rules.__all__``).
Nothing is copied by hand, so the pages cannot drift from the code.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import yaml

CONFIG_MARKER = "<!-- config-reference -->"
DEFAULTS_MARKER = "<!-- config-defaults -->"
EXAMPLE_MARKER = "<!-- config-example -->"
CLI_MARKER = "<!-- cli-reference -->"
API_MARKER = "<!-- api-reference -->"
HELP_WIDTH = 96
# Descriptions for schema nodes that have none (keyed by the path shown in the tables).
FALLBACK_DESCRIPTIONS = {
    "data.generated": "The generated dataset, used when `data.source` is `generated`.",
    "register.<namespace::stage>": "One stage: the import paths of its variants "
    "(at least one of `cpu`, `gpu`).",
    "register.<namespace::stage>.cpu": "Import path of the CPU variant: `module:Class` "
    "or `module.Class`.",
    "register.<namespace::stage>.gpu": "Import path of the GPU variant: `module:Class` "
    "or `module.Class`.",
}
# Schema keywords whose value may legitimately be null.
SCHEMA_KEYWORDS_WITH_NULL = {"default", "const", "examples"}


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, config_reference())
    if DEFAULTS_MARKER in markdown:
        markdown = markdown.replace(DEFAULTS_MARKER, config_defaults())
    if EXAMPLE_MARKER in markdown:
        root = Path(config["config_file_path"]).parent
        text = (root / "config" / "config.yaml").read_text()
        markdown = markdown.replace(EXAMPLE_MARKER, f"```yaml\n{text.rstrip()}\n```")
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_reference())
    return markdown


# -- the public API ----------------------------------------------------------------------


def api_reference() -> str:
    """A section per public name: where it lives, its signature, its docstring."""
    import inspect

    import swift_rules

    out = []
    for name in swift_rules.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(swift_rules, name)
        try:
            signature = str(inspect.signature(obj))
        except (TypeError, ValueError):
            signature = ""
        kind = "class" if inspect.isclass(obj) else "def"
        out += [f"### `{name}`\n", f"`from {obj.__module__} import {name}`\n",
                "```python", f"{kind} {name}{signature}", "```", ""]  # fmt: skip
        doc = inspect.getdoc(obj) or ""
        out += ["```text", doc, "```", ""] if doc else []
    return "\n".join(out)


# -- config -----------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    return "`" + json.dumps(value) + "`"


def _type(node: dict) -> str:
    kind = node.get("type")
    if kind is None and "enum" in node:
        kinds = sorted({type(v).__name__ for v in node["enum"]})
        kind = ["string" if k == "str" else k for k in kinds]
    if kind is None:
        return "any"
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "items" in node:
        item = _type(node["items"])
        kinds = [f"list of {item}" if k == "array" else k for k in kinds]
    if "object" in kinds and isinstance(node.get("additionalProperties"), dict):
        kinds = ["mapping" if k == "object" else k for k in kinds]
    return " or ".join(kinds)


def _allowed(node: dict) -> str:
    parts = []
    if "enum" in node:
        parts.append(", ".join(_code(v) for v in node["enum"]))
    if "minimum" in node:
        parts.append(f"≥ {node['minimum']}")
    if "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    items = node.get("items")
    if isinstance(items, dict) and (items.get("pattern") or items.get("enum")):
        parts.append("items: " + _allowed(items))
    if node.get("type") == "object" or "properties" in node:
        extra = node.get("additionalProperties", True)
        if extra is True and node.get("properties"):
            parts.append("other keys allowed")
    return "; ".join(parts) or "—"


def _description(node: dict) -> str:
    """The description, with the pieces a YAML flow mapping split off at commas put back.

    In ``{type: integer, description: Seed; same seed, same files.}`` YAML ends the
    description at the comma and reads ``same files.`` as a key with no value. Such keys
    (value None, not a schema keyword) follow the description in order: rejoin them.
    """
    text = node.get("description", "")
    for key, value in node.items():
        if value is None and key not in SCHEMA_KEYWORDS_WITH_NULL:
            text += f", {key}"
    return text


def _rows(path: str, node: dict, rows: list[list[str]]) -> None:
    default = _code(node["default"]) if "default" in node else "—"
    if not node.get("description") and path in FALLBACK_DESCRIPTIONS:
        node = {**node, "description": FALLBACK_DESCRIPTIONS[path]}
    rows.append(
        [
            f"`{path}`",
            _cell(_type(node)),
            default,
            _cell(_allowed(node)),
            _cell(_description(node)),
        ]
    )
    for name, child in node.get("properties", {}).items():
        _rows(f"{path}.{name}", child, rows)
    for pattern, child in node.get("patternProperties", {}).items():
        placeholder = "<namespace::stage>" if "::" in pattern else "<key>"
        child = {**child, "pattern": pattern}  # shown as the allowed key names
        _rows(f"{path}.{placeholder}", child, rows)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        _rows(f"{path}.<name>", {"description": "One entry per stage name.", **extra}, rows)


def _load_schema() -> dict:
    from swift_rules.config import schema

    return schema()


def config_reference() -> str:
    schema = _load_schema()
    out = []
    header = ["Key", "Type", "Default", "Allowed values", "Description"]
    for name, node in schema["properties"].items():
        rows: list[list[str]] = []
        _rows(name, node, rows)
        out.append(f"### `{name}`\n")
        if node.get("description"):
            out.append(_cell(_description(node)) + "\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out.extend("| " + " | ".join(row) + " |" for row in rows)
        out.append("")
    return "\n".join(out)


def config_defaults() -> str:
    from swift_rules.config import validate_config

    text = yaml.safe_dump(validate_config({}), sort_keys=False, default_flow_style=False)
    return f"```yaml\n{text.rstrip()}\n```"


# -- command line -----------------------------------------------------------------------


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    """Help text wrapped the same on every machine (argparse reads the terminal width)."""
    cls = parser.formatter_class
    if not isinstance(cls, functools.partial):
        parser.formatter_class = functools.partial(cls, width=HELP_WIDTH)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _argument_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.nargs != 0:
                name += f" `{action.metavar or action.dest.upper()}`"
        else:
            name = f"`{action.metavar or action.dest}`"
        if action.nargs in ("+", "*"):
            name += " …"
        notes = []
        if action.required or not action.option_strings:
            notes.append("required")
        if isinstance(action, argparse._AppendAction):
            notes.append("repeatable")
        if action.choices:
            notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
        if action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0:
            notes.append(f"default `{json.dumps(action.default)}`")
        rows.append([name, _cell(action.help or ""), _cell("; ".join(notes) or "—")])
    return rows


def cli_reference() -> str:
    from swift_rules.cli import build_parser

    parser = build_parser()
    _fixed_width(parser)
    out = ["### `swift-rules`\n", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in _subcommands(parser).items():
        _fixed_width(sub)
        out.append(f"### `swift-rules {name}`\n")
        if sub.description:
            out.append(_cell(sub.description) + "\n")
        rows = _argument_rows(sub)
        if rows:
            out.append("| Argument | Help | Notes |")
            out.append("|---|---|---|")
            out.extend("| " + " | ".join(row) + " |" for row in rows)
            out.append("")
        out += ["```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)

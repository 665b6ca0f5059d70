"""JDL (DIRAC's job description language): formatting and the swift-rules job's fields."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_value(v) for v in value) + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def format_jdl(fields: Mapping) -> str:
    """``[ Key = value; ... ]``; None values are left out."""
    lines = [f"    {k} = {_value(v)};" for k, v in fields.items() if v is not None]
    return "[\n" + "\n".join(lines) + "\n]"


def job_fields(
    *,
    name: str,
    executable: str,
    arguments: str = "",
    input_sandbox: Sequence[str] = (),
    output_sandbox: Sequence[str] = (),
    sites: Sequence[str] = (),
    banned_sites: Sequence[str] = (),
    cpu_time: int | None = None,
    tags: Sequence[str] = (),
    group: str | None = None,
    cores: int = 1,
    extra: Mapping | None = None,
) -> dict:
    """The JDL fields of one job; its stdout and stderr come back in the output sandbox."""
    fields = {
        "JobName": name,
        "Executable": executable,
        "Arguments": arguments or None,
        "StdOutput": "std.out",
        "StdError": "std.err",
        "InputSandbox": list(input_sandbox) or None,
        "OutputSandbox": ["std.out", "std.err", *output_sandbox],
        "Site": list(sites) or None,
        "BannedSites": list(banned_sites) or None,
        "CPUTime": int(cpu_time) if cpu_time else None,
        "Tags": list(tags) or None,
        "OwnerGroup": group or None,
    }
    if cores > 1:
        fields["NumberOfProcessors"] = int(cores)
    fields.update(dict(extra or {}))
    return fields


_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([{}\[\];=,])|([^\s{}\[\];=,"]+))', re.S)


def parse_jdl(text: str) -> dict:
    """The top-level fields of a JDL that ``format_jdl`` wrote (strings, numbers, lists)."""
    tokens = []
    for m in _TOKEN.finditer(text):
        if m.group(1) is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", m.group(1))))
        elif m.group(2):
            tokens.append(("op", m.group(2)))
        elif m.group(3):
            tokens.append(("word", m.group(3)))
    fields, i = {}, 1 if tokens and tokens[0] == ("op", "[") else 0
    while i < len(tokens) and tokens[i] != ("op", "]"):
        key = tokens[i][1]
        i += 2  # key and "="
        if tokens[i] == ("op", "{"):
            values, i = [], i + 1
            while tokens[i] != ("op", "}"):
                if tokens[i][0] != "op":
                    values.append(_scalar(tokens[i]))
                i += 1
            fields[key] = values
        else:
            fields[key] = _scalar(tokens[i])
        i += 2  # the value's last token and ";"
    return fields


def _scalar(token):
    kind, text = token
    if kind == "str":
        return text
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return text

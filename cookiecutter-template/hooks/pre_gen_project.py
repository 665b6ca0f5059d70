"""Check the answers before anything is written; exit non-zero with a clear message."""

import keyword
import re
import sys
from pathlib import Path

NAME = re.compile(r"^[A-Za-z_][\w.-]*$")  # one side of `namespace::stage`

package = "{{ cookiecutter.package_name }}"
namespace = "{{ cookiecutter.namespace }}"
stage = "{{ cookiecutter.stage_name }}"
source = "{{ cookiecutter.swift_rules_source }}"
path = "{{ cookiecutter.swift_rules_path }}"

errors = []
if not package.isidentifier() or keyword.iskeyword(package):
    errors.append(
        f"package_name {package!r} is not a valid Python identifier "
        "(letters, digits and underscores, not starting with a digit, not a keyword)"
    )
for key, value in (("namespace", namespace), ("stage_name", stage)):
    if not NAME.match(value):
        errors.append(
            f"{key} {value!r} cannot be used in a stage name `namespace::stage`: it must "
            r"match [A-Za-z_][\w.-]* (start with a letter or underscore; then letters, "
            "digits, '_', '.', '-')"
        )
if source == "path":
    if not path:
        errors.append("swift_rules_source is 'path' but swift_rules_path is empty")
    elif not Path(path).is_absolute():
        errors.append(f"swift_rules_path {path!r} must be an absolute path")
    elif not (Path(path) / "pyproject.toml").exists():
        errors.append(f"swift_rules_path {path!r} is not a swift-rules checkout (no pyproject)")

if errors:
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    sys.exit(1)

"""Check the answers before anything is written; exit non-zero with a clear message."""

import keyword
import re
import sys
from pathlib import Path

NAME = re.compile(r"^[A-Za-z_][\w.-]*$")  # one side of `namespace::stage`
PROFILES = {{ cookiecutter._profiles | list }}  # cookiecutter.json's _profiles

package = "{{ cookiecutter.package_name }}"
namespace = "{{ cookiecutter.namespace }}"
backends = "{{ cookiecutter.backends }}"
source = "{{ cookiecutter.swift_rules_source }}"
path = "{{ cookiecutter.swift_rules_path }}"

errors = []
if not package.isidentifier() or keyword.iskeyword(package):
    errors.append(
        f"package_name {package!r} is not a valid Python identifier "
        "(letters, digits and underscores, not starting with a digit, not a keyword)"
    )
if not NAME.match(namespace):
    errors.append(
        f"namespace {namespace!r} cannot be used in a stage name `namespace::stage`: it must "
        r"match [A-Za-z_][\w.-]* (start with a letter or underscore; then letters, "
        "digits, '_', '.', '-')"
    )
parts = backends.split("+")
if backends != "all" and (parts[0] != "local" or any(p not in PROFILES for p in parts[1:])):
    # A template error (cookiecutter checks the answer against the choices): each choice
    # of `backends` must be 'all' or 'local+NAME...' with NAME a key of `_profiles`.
    errors.append(
        f"backends {backends!r} is not 'local' or 'local+NAME' with NAME one of {PROFILES} "
        "(cookiecutter.json's _profiles)"
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

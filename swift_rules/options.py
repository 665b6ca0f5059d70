"""The options a stage declares, read from its source, to check a config before any job.

A stage's options are the keyword arguments of its ``__init__`` (config
``stages.<name>.options``). Planning must not import the stage (coffea, numba take
seconds, and the stage may not even import on this machine), so the signature is
read from the source: parameter names, annotations and defaults, following base
classes that are found as source too. A stage may instead give a JSON schema of its
options as a class attribute ``options_schema`` (a literal dict).

Checked: unknown options (unless ``__init__`` takes ``**kwargs``), and values whose
type contradicts the annotation, or the default's type where there is no annotation.
Anything the source does not tell (an annotation of another type, a base class
compiled or out of reach) is not checked rather than guessed.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real

from swift_rules.config import ConfigError, validate
from swift_rules.fingerprint import find_module
from swift_rules.registry import split_target

# Annotation name -> (check, what the value must be)
TYPES = {
    "float": (lambda v: isinstance(v, Real) and not isinstance(v, bool), "a number"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "tuple": (lambda v: isinstance(v, list), "a list"),
    "Sequence": (lambda v: isinstance(v, list), "a list"),
    "dict": (lambda v: isinstance(v, dict), "a mapping"),
    "Mapping": (lambda v: isinstance(v, dict), "a mapping"),
}


class OptionsError(ConfigError):
    """A stage option that the stage does not take, or of the wrong type."""


@dataclass
class Parameter:
    name: str
    kinds: tuple[str, ...] | None  # allowed annotation names; None: not checked
    optional: bool  # None is allowed
    default: str | None  # as written in the source


@dataclass
class Signature:
    where: str  # "module:Class.__init__"
    parameters: dict[str, Parameter] = field(default_factory=dict)
    any_keyword: bool = False
    schema: dict | None = None


def _names(annotation: ast.AST) -> tuple[tuple[str, ...] | None, bool]:
    """(type names, None allowed) of an annotation; None names: do not check."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None, True
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        left, lnone = _names(annotation.left)
        right, rnone = _names(annotation.right)
        if left is None or right is None:
            return None, True
        return left + right, lnone or rnone
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return (), True
    if isinstance(annotation, ast.Subscript):
        base = _names(annotation.value)[0]
        if base == ("Optional",):
            inner, _ = _names(annotation.slice)
            return inner, True
        return base, False
    if isinstance(annotation, ast.Attribute):
        name = annotation.attr
    else:
        name = getattr(annotation, "id", None)
    if name in TYPES:
        return (name,), False
    return None, True


def _from_default(default: ast.AST) -> tuple[tuple[str, ...] | None, bool]:
    if isinstance(default, ast.Constant):
        if default.value is None:
            return None, True
        kind = type(default.value).__name__
        return ((kind,), False) if kind in TYPES else (None, True)
    if isinstance(default, (ast.List, ast.Tuple)):
        return ("list",), False
    if isinstance(default, ast.Dict):
        return ("dict",), False
    return None, True


def _parameters(init: ast.FunctionDef, source: str) -> tuple[dict[str, Parameter], bool]:
    args = init.args
    positional = [*args.posonlyargs, *args.args][1:]  # without self
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    # (No zip(strict=...): planning runs under REANA's Python 3.8 engine too.)
    pairs = [*zip(positional, defaults), *zip(args.kwonlyargs, args.kw_defaults)]  # noqa: B905
    out = {}
    for arg, default in pairs:
        if arg.annotation is not None:
            kinds, optional = _names(arg.annotation)
        elif default is not None:
            kinds, optional = _from_default(default)
        else:
            kinds, optional = None, True
        if isinstance(default, ast.Constant) and default.value is None:
            optional = True
        text = ast.get_source_segment(source, default) if default is not None else None
        out[arg.arg] = Parameter(arg.arg, kinds, optional, text)
    return out, args.kwarg is not None


def _imports(tree: ast.Module, module: str) -> dict[str, str]:
    """Names bound by ``from x import y`` in a module: name -> ``x:y``."""
    package = module.rpartition(".")[0]
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                out[alias.asname or alias.name] = f"{base}:{alias.name}"
    return out


def signature(target: str, _seen: frozenset = frozenset()) -> Signature | None:
    """The options of ``module:Class`` from its source; None when it cannot be read."""
    module, name = split_target(target)
    path = find_module(module)
    if path is None or target in _seen:
        return None
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        return None
    sig = Signature(f"{module}:{name}.__init__")
    for node in cls.body:
        value = getattr(node, "value", None)
        targets = [getattr(t, "id", None) for t in getattr(node, "targets", [])]
        if isinstance(node, ast.AnnAssign):
            targets = [getattr(node.target, "id", None)]
        if "options_schema" in targets and value is not None:
            try:
                sig.schema = ast.literal_eval(value)
                return sig
            except ValueError:
                return None
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None)  # fmt: skip
    if init is not None:
        sig.parameters, sig.any_keyword = _parameters(init, source)
        return sig
    imports = _imports(tree, module)
    for base in cls.bases:
        base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if base_name in ("ProcessorABC", "object"):
            continue  # their __init__ takes nothing
        if base_name is None:
            return None
        # The first base with an __init__ of its own decides (unresolved: not checked).
        return signature(imports.get(base_name, f"{module}:{base_name}"), _seen | {target})
    return sig  # no __init__ anywhere: it takes no options


def check_options(stage: str, target: str, options: Mapping) -> None:
    """Raise OptionsError naming the stage, the option and the value at fault."""
    sig = signature(target)
    if sig is None:
        return
    where = f"stages.{stage}.options"
    if sig.schema is not None:
        try:
            validate(options, sig.schema, f"{target}'s options_schema", where + ".")
        except ConfigError as err:
            raise OptionsError(str(err)) from None
        return
    takes = (
        ", ".join(
            f"{p.name}={p.default}" if p.default is not None else p.name
            for p in sig.parameters.values()
        )
        or "no options"
    )
    for name, value in options.items():
        param = sig.parameters.get(name)
        if param is None:
            if sig.any_keyword:
                continue
            raise OptionsError(
                f"{where}: stage {stage} has no option {name!r} ({sig.where} takes {takes})"
            )
        if param.kinds is None or (value is None and param.optional):
            continue
        if not any(TYPES[k][0](value) for k in param.kinds):
            must = " or ".join(dict.fromkeys(TYPES[k][1] for k in param.kinds)) or "null"
            raise OptionsError(
                f"{where}.{name}: {value!r} is not {must} (stage {stage}, {sig.where} takes "
                f"{takes})"
            )

"""Remote inputs (root://, https://): URL rewriting, and local copies ("stage-in").

The rewriting is config ``data.remote`` (docs/remote-data.md): prefix rules (another
host, EOS Open Data, a local mirror), then an XCache prefix. Imported when Snakemake
parses the rules: light, and Python 3.8 (REANA's engine).
"""

from __future__ import annotations

import posixpath
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from swift_rules.atomic import atomic_path
from swift_rules.errors import SwiftError


class RemoteError(SwiftError):
    """A remote input cannot be read or copied."""


# A URL's scheme (RFC 3986): a letter, then letters, digits, "+", "-" or "." (root,
# https, xroots, s3...). A local path that merely contains "://" is not a URL.
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(path: str) -> bool:
    return SCHEME.match(path) is not None


def rewrite(path: str, remote: Mapping) -> str:
    """``path`` as config ``data.remote`` says to read it: the first ``rewrite`` rule whose
    ``prefix`` starts it replaces that prefix; then ``cache_prefix`` goes in front of a
    root:// URL (an XCache in forwarding mode: ``root://cache//root://origin//path``)."""
    for rule in remote.get("rewrite") or ():
        if path.startswith(rule["prefix"]):
            path = rule["replace"] + path[len(rule["prefix"]) :]
            break
    prefix = remote.get("cache_prefix")
    if prefix and path.startswith("root://"):
        path = prefix.rstrip("/") + "//" + path
    return path


def staged_path(url: str, folder: str) -> str:
    """Where the stage-in rule copies ``url``: ``folder/HOST[_PORT]/PATH``, never outside
    ``folder`` (a host or path of ``..`` would write over the workflow's own files)."""
    parts = urlsplit(url)
    host = parts.netloc.replace(":", "_")
    path = posixpath.normpath(parts.path.lstrip("/")) if parts.path.strip("/") else ""
    bad_host = not host or host in (".", "..") or "/" in host or "\\" in host
    if not is_remote(url) or bad_host or not path or path.startswith(".."):
        raise RemoteError(f"cannot stage in {url!r}: expected scheme://host/path")
    if ".." in Path(parts.path).parts:
        raise RemoteError(f"cannot stage in {url!r}: its path leaves the stage-in folder")
    return f"{folder.rstrip('/')}/{host}/{path}"


def stage_in(url: str, out: str | Path) -> int:
    """Copy ``url`` to ``out`` (atomically); the number of bytes copied."""
    import fsspec

    try:
        with fsspec.open(url, "rb") as src, atomic_path(out) as tmp, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=8 << 20)
    except (OSError, ValueError, ImportError) as err:
        why = f"{type(err).__name__}: {err}"
        raise RemoteError(f"{url}: cannot be copied to {out} ({why})") from err
    return Path(out).stat().st_size

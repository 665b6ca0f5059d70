"""Secrets out of what we record and print.

Executor settings may carry secrets (a broker token in ``executor.kubernetes.env``,
say), and result records, logs and reports are read by others: a collaborator, a
provenance file, a published report. ``redact`` hides the values of secret-looking
names anywhere in such a mapping; names of files that hold a secret
(``token_file``, ``DASK_BROKER_TOKEN_FILE``) are kept: a path is not the secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

HIDDEN = "<redacted>"
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|PRIVATE_?KEY|API_?KEY|ACCESS_?KEY")
_NAMES_A_FILE = re.compile(r"(FILE|PATH|DIR)$")


def is_secret(name: object) -> bool:
    """Whether a setting or environment variable of this name holds a secret."""
    upper = str(name).upper()
    return bool(_SECRET.search(upper)) and not _NAMES_A_FILE.search(upper)


def redact(value):
    """A copy of ``value`` (JSON-like) with every secret-looking entry's value hidden
    (a reference to a secret, a mapping, is kept: it holds no secret)."""
    if isinstance(value, Mapping):
        return {
            k: HIDDEN if is_secret(k) and isinstance(v, str | bytes | int) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value

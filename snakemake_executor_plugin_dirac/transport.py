"""The transport of the executor's settings: DiracX's REST API (``--dirac-transport
diracx``, the default) or the classic ``dirac-wms-job-*`` commands (``classic``), both
``swift_rules.dirac.transport.Transport``s."""

import os
from pathlib import Path

from snakemake_interface_common.exceptions import WorkflowError

from swift_rules.dirac.transport import ClassicTransport, DiracXTransport

DEFAULT_CREDENTIALS = "~/.cache/diracx/credentials.json"


def make_transport(settings, jobdir: Path):
    """The transport ``settings`` name; a bad name or no server URL is a WorkflowError."""
    if settings.transport == "classic":
        return ClassicTransport(jobdir / "classic")
    if settings.transport != "diracx":
        raise WorkflowError(f"--dirac-transport: {settings.transport!r} is not diracx or classic")
    url = settings.url or os.environ.get("DIRACX_URL")
    if not url:
        raise WorkflowError("DIRAC executor: no server URL: set --dirac-url or DIRACX_URL")
    credentials = (
        settings.credentials or os.environ.get("DIRACX_CREDENTIALS_PATH") or DEFAULT_CREDENTIALS
    )
    return DiracXTransport(url, credentials)

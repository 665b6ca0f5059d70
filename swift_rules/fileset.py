"""Write AGC-layout fileset JSON for local files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from swift_rules.atomic import write_text
from swift_rules.errors import SwiftError


def write_fileset(files: Iterable[str], out: str | Path) -> dict:
    """``{process: {variation: {files: [{path, nevts}], nevts_total}}}`` for files laid
    out as ``.../PROCESS__VARIATION/NAME.root``, with event counts read from each."""
    import uproot

    layout: dict = {}
    for path in sorted(files):
        sample = Path(path).parent.name
        process, sep, variation = sample.partition("__")
        if not sep:
            raise SwiftError(f"{path}: its directory {sample!r} is not PROCESS__VARIATION")
        with uproot.open(path) as fh:
            nevts = fh["Events"].num_entries
        entry = layout.setdefault(process, {}).setdefault(
            variation, {"files": [], "nevts_total": 0}
        )
        entry["files"].append({"path": str(path), "nevts": nevts})
        entry["nevts_total"] += nevts
    write_text(out, json.dumps(layout, indent=2, sort_keys=True) + "\n")
    return layout

"""The real AGC fileset in coffea's format, with each dataset's metadata.

``data/nanoaod_inputs.json`` is the AGC's published file list (its own layout, kept as
published); ``data/fileset.json``, which the registry names ``agc``, is the same files
and event counts as a coffea fileset with the metadata the toolkit reads (process,
variation, cross section). A test checks that the two agree.

    python -m swift_rules.agc.fileset     # rewrite data/fileset.json
"""

from __future__ import annotations

import json
from pathlib import Path

from swift_rules.agc.samples import CROSS_SECTIONS_PB
from swift_rules.datasets import parse_fileset, write_fileset

DATA = Path(__file__).with_name("data")
PUBLISHED = DATA / "nanoaod_inputs.json"
FILESET = DATA / "fileset.json"


def agc_datasets() -> dict:
    """The published AGC datasets, with cross sections and ``is_data: false``."""
    datasets = parse_fileset(json.loads(PUBLISHED.read_text()), str(PUBLISHED))
    for ds in datasets.values():
        ds.metadata.update(is_data=False, xsec=CROSS_SECTIONS_PB[ds.metadata["process"]])
    return datasets


if __name__ == "__main__":
    write_fileset(agc_datasets().values(), FILESET)
    print(FILESET)

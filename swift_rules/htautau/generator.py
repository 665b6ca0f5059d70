"""The H -> tautau analysis' data generator as swift-rules registers it (``htautau::nanoaod``).

Light on purpose: planning a workflow imports this module on every Snakemake start, so
it takes the datasets and their sizes from :mod:`swift_rules.htautau.presets` and imports
the generator itself (numpy, uproot: :mod:`swift_rules.htautau.generate`) only to write a
file.
"""

from __future__ import annotations

from swift_rules.htautau import presets as _presets


class HttGenerator:
    """Files in the outreach NanoAOD format of the nine samples (``generate.py``)."""

    presets = {
        "tiny": "32k events (22k simulated, 10k data): CI, every histogram populated",
        "small": "400k events (300k simulated, 100k data): the default run",
        "benchmark": "5.5M events (5M simulated, 500k data) in files of up to 500k",
    }

    def datasets(self, preset: str) -> dict[str, dict]:
        return _presets.datasets(preset)

    def write(self, path, dataset: str, index: int, events: int, seed: int, compression: str):
        from swift_rules.htautau.generate import generate_file

        return generate_file(
            path, dataset, events, file_index=index, seed=seed, compression=compression
        )

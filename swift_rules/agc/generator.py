"""The AGC's data generator as swift-rules registers it (``agc::nanoaod``).

Light on purpose: planning a workflow imports this module on every Snakemake start, so
it names datasets and sizes from ``presets`` and imports the generator itself
(numpy, uproot) only to write a file.
"""

from __future__ import annotations

from swift_rules.agc.presets import DEFAULT_SIZES
from swift_rules.agc.samples import CROSS_SECTIONS_PB, SAMPLE_SETS, sample_name


class AGCGenerator:
    """NanoAOD-format files of the AGC's nine samples (``swift_rules.agc.generate``)."""

    presets = {
        "tiny": "about 33k events: CI smoke tests",
        "small": "about 420k events: the README's default run",
        "benchmark": "about 5.75M events in files of 250k-500k",
    }

    def datasets(self, preset: str) -> dict[str, dict]:
        events, files = DEFAULT_SIZES[preset]
        out = {}
        for process, variation in SAMPLE_SETS:
            name = sample_name(process, variation)
            out[name] = {
                "files": files[name],
                "events": events[name],
                "metadata": {
                    "is_data": False,
                    "process": process,
                    "variation": variation,
                    "xsec": CROSS_SECTIONS_PB[process],
                },
            }
        return out

    def write(self, path, dataset: str, index: int, events: int, seed: int, compression: str):
        from swift_rules.agc.generate import generate_file
        from swift_rules.agc.samples import split_sample_name

        process, variation = split_sample_name(dataset)
        return generate_file(
            path, process, variation, events, file_index=index, seed=seed, compression=compression
        )

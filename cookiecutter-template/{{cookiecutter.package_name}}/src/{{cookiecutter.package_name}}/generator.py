"""Step 1b: the data generator `{{ cookiecutter.namespace }}::toy`, registered in registry.yaml.

With `data.source: generated` (config/config.yaml), swift-rules asks this class which
datasets a preset has (`datasets`), then runs one job per file that calls `write`
(`swift-rules generate`). It writes a toy dimuon analysis in NanoAOD format: a Z-like
`signal`, a falling `background` continuum with jets, and `data`, a mixture of both in
the proportions of their cross sections (src/{{ cookiecutter.package_name }}/generate.py).

This module is imported whenever the workflow is planned, so it stays light: numpy and
uproot are imported by `write`, in the job that writes a file.

swift-rules writes the files that are missing: after a change here or in generate.py,
delete data/generated/ so that they are written again.
"""

# The toy's integrated luminosity (/pb): its data has as many events as the simulation
# predicts for it, sum(xsec) x LUMINOSITY_PB. config/config.yaml's `outputs.luminosity`
# is this number, so that the normalised simulation matches the data.
LUMINOSITY_PB = 1.0

# Dataset name -> its metadata in the fileset (swift-rules reads is_data, xsec, process
# and variation; any other key reaches the stages as events.metadata).
DATASETS = {
    "signal": {"is_data": False, "process": "signal", "variation": "nominal", "xsec": 2000.0},
    "background": {
        "is_data": False,
        "process": "background",
        "variation": "nominal",
        "xsec": 2000.0,
    },
    "data": {"is_data": True, "process": "data"},
}
DATA_EVENTS = round(LUMINOSITY_PB * sum(m.get("xsec", 0.0) for m in DATASETS.values()))

# Preset -> dataset -> (files, events per file). The data is the same in every preset
# (LUMINOSITY_PB); the presets differ in the simulation's statistics.
PRESETS = {
    "tiny": {"signal": (1, 2000), "background": (2, 1500), "data": (1, DATA_EVENTS)},
    "small": {"signal": (4, 25_000), "background": (4, 25_000), "data": (2, DATA_EVENTS // 2)},
}


class ToyGenerator:
    """NanoAOD-format files of the toy's three datasets."""

    presets = {
        "tiny": "CI and tests: 2,000 signal, 3,000 background events; data 4,000 (1 /pb)",
        "small": "a closer look: 100,000 signal, 100,000 background events; data 4,000 (1 /pb)",
    }

    def datasets(self, preset: str) -> dict[str, dict]:
        """{dataset: {files, events (per file), metadata}} of a preset."""
        return {
            name: {"files": files, "events": events, "metadata": dict(DATASETS[name])}
            for name, (files, events) in PRESETS[preset].items()
        }

    def write(self, path, dataset: str, index: int, events: int, seed: int, compression: str):
        """Write file number `index` of `dataset` with `events` events; returns how many."""
        from {{ cookiecutter.package_name }}.generate import write_file

        return write_file(path, dataset, events, index=index, seed=seed, compression=compression)

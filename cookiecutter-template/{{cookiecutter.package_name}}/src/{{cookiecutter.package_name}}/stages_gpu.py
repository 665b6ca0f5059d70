"""GPU variant of `{{ cookiecutter.namespace }}::{{ cookiecutter.stage_name }}`.

swift-rules runs it instead of the CPU variant on machines with a usable GPU
(`stages.<name>.device: auto`). The jet counting runs on the GPU with awkward's CUDA
backend (needs cupy); the histogram is filled on the CPU. Same outputs as the CPU variant.
"""

import awkward as ak

from {{ cookiecutter.package_name }}.stages import JetMultiplicity


class JetMultiplicityGPU(JetMultiplicity):
    def count_jets(self, events):
        pt = ak.to_backend(events.Jet.pt, "cuda")
        counts = ak.sum(pt > self.min_pt, axis=1)
        return ak.to_numpy(ak.to_backend(counts, "cpu"))

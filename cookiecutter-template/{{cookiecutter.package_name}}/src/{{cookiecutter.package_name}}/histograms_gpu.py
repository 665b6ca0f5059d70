"""GPU variant of `{{ cookiecutter.namespace }}::histograms` (registry.yaml, `gpu:`).

swift-rules runs it instead of the CPU variant on machines with a usable GPU (the
stage's `device: auto` in config/config.yaml). It runs the CPU variant's code with CuPy
in place of NumPy: the masses and jet counts are computed on the GPU; the skims are read
and the histograms filled on the CPU. Same outputs as the CPU variant
(tests/test_histograms_gpu.py checks this).
"""

from {{ cookiecutter.package_name }}.histograms import Histograms


class HistogramsGPU(Histograms):
    # CuPy is imported when the variant runs, not with this module: machines without
    # CuPy can still import the module (swift-rules hashes its code everywhere; the
    # tests import it everywhere).
    def array_namespace(self):
        import cupy

        return cupy

    def to_host(self, array):
        import cupy

        return cupy.asnumpy(array)

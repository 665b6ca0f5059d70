"""GPU variant of `{{ cookiecutter.namespace }}::{{ cookiecutter.stage_name }}`.

swift-rules runs it instead of the CPU variant on machines with a usable GPU
(`stages.<name>.device: auto`). It runs the CPU variant's code with CuPy in place of
NumPy: the jets are counted on the GPU, the files are read and the histogram is filled
on the CPU. Same outputs as the CPU variant (tests/test_stages_gpu.py checks this).
"""

from {{ cookiecutter.package_name }}.stages import JetMultiplicity


class JetMultiplicityGPU(JetMultiplicity):
    # CuPy is imported when the variant runs, not with this module: machines without
    # CuPy can still import the module (swift-rules does so only to run the variant;
    # the tests import it everywhere).
    def array_namespace(self):
        import cupy

        return cupy

    def to_host(self, array):
        import cupy

        return cupy.asnumpy(array)

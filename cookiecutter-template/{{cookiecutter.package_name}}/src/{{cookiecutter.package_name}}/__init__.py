"""{{ cookiecutter.analysis_name }}: a swift-rules analysis.

One module per step (README.md, "Where each piece goes"): generator.py and generate.py
(the toy input data), skim.py, histograms.py{% if cookiecutter.gpu_variant == "yes" %} (and histograms_gpu.py){% endif %}, yields.py (an own step).
"""

"""swift-rules: reusable Snakemake rules around Dask-parallel coffea stages."""

from swift_rules.registry import register_stage

__version__ = "0.1.0"
__all__ = ["__version__", "register_stage"]

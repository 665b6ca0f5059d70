"""swift-rules: reusable Snakemake rules around Dask-parallel coffea stages."""

__version__ = "0.1.0"
__all__ = ["__version__", "register_stage"]


def __getattr__(name: str):
    # Imported on first use: every job's `swift-rules` client imports this package, and
    # the registry (YAML, entry points) would add 25 ms to each one.
    if name == "register_stage":
        from swift_rules.registry import register_stage

        return register_stage
    raise AttributeError(f"module 'swift_rules' has no attribute {name!r}")

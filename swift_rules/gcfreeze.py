"""Imports with the garbage collector off, then frozen: for processes whose imported
modules live until they exit (a stage job, the warm-start server before it forks)."""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def frozen_imports():
    """Collector off inside; on leaving, everything alive is frozen (``gc.freeze``): later
    full collections no longer walk it, nor, in a forked child, copy its pages. What is
    imported is never garbage; the collector would only walk it (docs/benchmarks.md: 0.15-0.3
    s of collector pauses after the imports of a stage job became 0.09 s)."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()

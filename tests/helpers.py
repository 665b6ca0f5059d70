"""Helpers shared by the tests (imported as ``helpers``; fixtures stay in conftest)."""

from __future__ import annotations

import copy

# What a config needs to plan the AGC on generated data (the workflow's own config has
# the same: config/config.yaml).
AGC_BASE = {
    "registries": ["swift_rules.agc"],
    "data": {"source": "generated", "generated": {"generator": "agc::nanoaod"}},
    "outputs": {"luminosity": 3378.0},
}


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, mapping by mapping."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def agc_config(**sections) -> dict:
    """A config for the AGC on generated data, with ``sections`` merged in."""
    return merge(AGC_BASE, sections)

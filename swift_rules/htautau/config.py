"""The H->tautau analysis' own settings: config section ``analysis``, checked against its
schema."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from swift_rules.config import validate_section

SCHEMA = Path(__file__).with_name("config.schema.yaml")


def analysis_settings(config: Mapping) -> dict:
    return validate_section(config, "analysis", SCHEMA)

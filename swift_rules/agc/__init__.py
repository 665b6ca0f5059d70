"""The IRIS-HEP Analysis Grand Challenge CMS ttbar analysis, built on swift-rules."""

from pathlib import Path

# Its registrations (stage, generator, fileset): the entry point `swift_rules.stages`.
REGISTRY = Path(__file__).with_name("registry.yaml")
RULES = Path(__file__).with_name("rules.smk")

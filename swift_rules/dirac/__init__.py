"""DIRAC: JDL jobs through DiracX's REST API (or the classic DIRAC commands).

Shared by the Snakemake executor plugin (``snakemake_executor_plugin_dirac``) and by
``DIRACCluster`` (``swift_rules.backends.dirac``): both build JDL with ``jdl`` and send
it through a ``transport.Transport``.
"""

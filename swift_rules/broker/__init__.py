"""The Dask connection broker: every Dask connection through one open port.

- :mod:`swift_rules.broker.protocol`: the wire protocol (JSON lines, HMAC token auth),
  shared by the broker and its clients;
- :mod:`swift_rules.broker.server`: the broker (``swift-rules broker serve``,
  :mod:`swift_rules.broker.cli`), with :mod:`swift_rules.broker.splice`.

The client side, what the Dask endpoints need (the ``broker://`` comm backend, the
scheduler's and workers' settings, tokens), lives with the Dask clusters that use it:
:mod:`swift_rules.backends.broker_comm` and :mod:`swift_rules.backends.broker`. Nothing
here imports them: the broker runs without the backends (tests/test_layers.py).
See docs/broker.md.
"""

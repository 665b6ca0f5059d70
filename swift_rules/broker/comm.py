"""The ``broker://`` comm backend's old home, for environments installed before it moved
to :mod:`swift_rules.backends.broker_comm`: their ``distributed.comm.backends`` entry
point still names ``swift_rules.broker.comm:BrokerBackend`` until swift-rules is
installed again (pyproject.toml names the new module). Nothing else imports this."""

from swift_rules.backends.broker_comm import BrokerBackend

__all__ = ["BrokerBackend"]

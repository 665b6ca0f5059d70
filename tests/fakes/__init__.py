"""Stand-ins for what the tests cannot have here: another local user (``users``), another
host on the network (``netns``), a DiracX server (``dirac_server``, set up by
``dirac_server_setup`` in the server's own environment) and a grid site playing DIRAC's
agents and pilots (``dirac_site``). ``users`` and ``netns`` are pytest plugins
(conftest's ``pytest_plugins``): their fixtures are everyone's."""

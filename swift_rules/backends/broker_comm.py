"""Dask comm backend ``broker://``: every connection goes out to the broker's one port.

Addresses are ``broker://BROKERHOST:PORT/ENDPOINT-ID``. A listener (scheduler, worker,
nanny) registers ENDPOINT-ID with the broker over a control connection it opens itself
(``broker://HOST:PORT`` without an id: a fresh id is made up), and answers the broker's
``open`` requests with fresh outbound data connections. A connector opens a connection
to the broker naming the target. Once the broker has spliced the two, both ends wrap
the socket in Dask's own TCP comm, so Dask's framing and serialisation are unchanged.

Registered through the ``distributed.comm.backends`` entry point (pyproject.toml; the
old path ``swift_rules.broker.comm`` still answers for environments installed before). The
token comes from $DASK_BROKER_TOKEN, $DASK_BROKER_TOKEN_FILE or Dask's config
``distributed.comm.broker.token`` / ``token-file``; with a run token, the ids this
process makes up start with the run's name (the only ones it may use). With Dask TLS
settings, the connections to the broker use TLS (the broker then needs a certificate:
``--tls-cert``). A broker too busy to take a new connection is tried again for a while.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket

from distributed.comm.core import Comm, CommClosedError, Connector, FatalCommClosedError, Listener
from distributed.comm.registry import Backend
from distributed.comm.tcp import MAX_BUFFER_SIZE, TCP
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

from swift_rules.broker import protocol

# (Named as before the module moved here: what the endpoints' logs say stays the same.)
logger = logging.getLogger("swift_rules.broker.comm")

# After losing the broker, a listener tries to register again with a growing delay, at
# most this long between tries, for as long as it runs (the broker may be restarting).
RETRY_CAP_S = 5.0


class BrokerRefused(FatalCommClosedError):
    """The broker said no for good (authentication, a taken id): retrying cannot help."""


class BrokerBusy(CommClosedError):
    """The broker has too many connections in the handshake: try again shortly."""


def parse_loc(loc: str) -> tuple[str, int, str | None]:
    """``HOST:PORT[/ID]`` -> (host, port, id or None); port 0 or none: the default port."""
    from distributed.comm.addressing import parse_host_port

    hostport, _, eid = loc.partition("/")
    host, port = parse_host_port(hostport, protocol.DEFAULT_PORT)
    if eid and not protocol.ID_PATTERN.match(eid):
        raise ValueError(f"bad broker endpoint id {eid!r} in address broker://{loc}")
    return host, int(port) or protocol.DEFAULT_PORT, eid or None


def _new_id() -> str:
    """A fresh endpoint id; ``RUN.``-prefixed for a run token (its endpoints must be), or
    where Dask's config ``distributed.comm.broker.run`` names a run (a stage job's
    scheduler, which the run's workers are to reach)."""
    import dask.config

    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:60] or "host"
    try:
        run = _credential().run
    except BrokerRefused:
        run = None  # (no token yet: the registration will say so)
    run = run or dask.config.get("distributed.comm.broker.run", None)
    return f"{run + '.' if run else ''}{host}-{os.getpid()}-{secrets.token_hex(4)}"


def _credential() -> protocol.Credential:
    # Read per connection (a few microseconds): a changed token file takes effect.
    try:
        return protocol.credential(protocol.read_token())
    except ValueError as err:
        raise BrokerRefused(str(err)) from None


def _client_tls(connection_args: dict, listening: bool):
    """The TLS context for connections to the broker, or None (plain TCP).

    A connector gets Dask's client-side context. A listener gets Dask's server-side one,
    which cannot open connections; it uses Dask's TLS config as a client instead."""
    ctx = connection_args.get("ssl_context")
    if ctx is None or not listening:
        return ctx
    from distributed.security import Security

    return Security().get_connection_args("worker").get("ssl_context")


async def _handshake(host, port, request: dict, ssl_ctx, timeout: float = 30.0) -> IOStream:
    """Open a connection to the broker, send ``request``, return the stream after ``ok``
    (within ``timeout`` seconds: a firewall that drops packets must not hang us). A busy
    broker is tried again meanwhile, with a growing delay."""
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + timeout, 0.05
    while True:
        try:
            left = deadline - loop.time()
            return await asyncio.wait_for(_exchange(host, port, request, ssl_ctx), left)
        except TimeoutError:
            why = f"broker {host}:{port}: no answer within {timeout:g} s"
            raise CommClosedError(why) from None
        except BrokerBusy:
            if loop.time() + delay >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, 1.0)


def _refusal(where: str, op: str, why: str) -> CommClosedError:
    if why.startswith("busy"):
        return BrokerBusy(f"{where} is busy, {op}: {why}")
    if why.startswith("no endpoint") or "did not answer" in why:
        # The target may be registering again (broker restart): Dask retries.
        return CommClosedError(f"{where} refused {op}: {why}")
    return BrokerRefused(f"{where} refused {op}: {why}")


async def _exchange(host, port, request: dict, ssl_ctx) -> IOStream:
    cred = _credential()
    where = f"broker {host}:{port}"
    stream = None
    try:
        stream = await TCPClient().connect(host, port, max_buffer_size=MAX_BUFFER_SIZE)
        if ssl_ctx is not None:
            stream = await stream.start_tls(False, ssl_options=ssl_ctx, server_hostname=host)
        hello = protocol.decode(await stream.read_until(b"\n", max_bytes=protocol.MAX_LINE))
        if hello.get("ok") is False:  # turned away before the handshake (busy)
            stream.close()
            raise _refusal(where, request["op"], str(hello.get("error")))
        request = {**request, **cred.claims(), "cnonce": protocol.nonce()}
        request["mac"] = protocol.request_mac(cred.key, str(hello.get("nonce")), request)
        await stream.write(protocol.encode(request))
        reply = protocol.decode(await stream.read_until(b"\n", max_bytes=protocol.MAX_LINE))
    except CommClosedError:
        raise  # (a refusal: its own kind)
    except (StreamClosedError, OSError) as err:
        raise CommClosedError(f"{where}: {err}") from err
    except asyncio.CancelledError:  # timed out
        if stream is not None:
            stream.close()
        raise
    except protocol.ProtocolError as err:
        stream.close()
        raise BrokerRefused(f"{where} does not speak the broker protocol: {err}") from err
    if not reply.get("ok"):
        stream.close()
        raise _refusal(where, request["op"], str(reply.get("error")))
    expected = protocol.reply_mac(cred.key, request["cnonce"], str(hello.get("nonce")))
    if not protocol.same(reply.get("mac"), expected):
        stream.close()
        raise BrokerRefused(f"{where} did not prove it knows the broker token: not our broker")
    return stream


class BrokerConnector(Connector):
    async def connect(self, address, deserialize=True, **connection_args) -> Comm:
        host, port, eid = parse_loc(address)
        if eid is None:
            raise ValueError(f"broker address without an endpoint id: broker://{address}")
        ssl_ctx = _client_tls(connection_args, listening=False)
        stream = await _handshake(host, port, {"op": "connect", "target": eid}, ssl_ctx)
        return TCP(stream, f"broker://{host}:{port}", f"broker://{address}", deserialize)


class BrokerListener(Listener):
    prefix = "broker://"

    def __init__(self, loc, handle_comm, deserialize, allow_offload=True, **connection_args):
        super().__init__()
        self.host, self.port, eid = parse_loc(loc)
        self.id = eid or _new_id()
        self.handle_comm = handle_comm
        self.deserialize = deserialize
        self.allow_offload = allow_offload
        self.ssl_ctx = _client_tls(connection_args, listening=True)
        self.control: IOStream | None = None
        self.task: asyncio.Task | None = None
        self.answers: set[asyncio.Task] = set()
        self.stopped = False

    @property
    def listen_address(self):
        return f"broker://{self.host}:{self.port}/{self.id}"

    @property
    def contact_address(self):
        return self.listen_address

    async def start(self):
        self.control = await self._register()
        self.task = asyncio.ensure_future(self._serve())

    def stop(self):
        self.stopped = True
        if self.control is not None:
            self.control.close()
        if self.task is not None:
            self.task.cancel()

    async def _register(self) -> IOStream:
        return await _handshake(
            self.host, self.port, {"op": "register", "id": self.id}, self.ssl_ctx
        )

    async def _serve(self):
        """Answer ``open`` requests; after losing the broker, register again."""
        while not self.stopped:
            try:
                line = await self.control.read_until(b"\n", max_bytes=protocol.MAX_LINE)
                msg = protocol.decode(line)
            except (StreamClosedError, protocol.ProtocolError) as err:
                if self.stopped:
                    return
                logger.warning(
                    "%s: lost the broker (%s); registering again", self.listen_address, err
                )
                self.control = await self._register_again()
                continue
            if msg.get("op") == "open" and isinstance(msg.get("ticket"), str):
                task = asyncio.ensure_future(self._answer(msg["ticket"]))
                self.answers.add(task)
                task.add_done_callback(self.answers.discard)

    async def _register_again(self) -> IOStream:
        delay, tries = 0.1, 0
        while True:
            try:
                control = await self._register()
                logger.warning("%s: registered again with the broker", self.listen_address)
                return control
            except OSError as err:
                tries += 1
                if tries == 1 or tries % 12 == 0:
                    logger.warning(
                        "%s: cannot register with the broker yet: %s", self.listen_address, err
                    )
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_CAP_S)

    async def _answer(self, ticket: str):
        try:
            stream = await _handshake(
                self.host, self.port, {"op": "data", "id": self.id, "ticket": ticket}, self.ssl_ctx
            )
        except OSError as err:
            logger.warning("%s: cannot answer a connection: %s", self.listen_address, err)
            return
        comm = TCP(
            stream, self.listen_address, f"broker://{self.host}:{self.port}", self.deserialize
        )
        comm.allow_offload = self.allow_offload
        try:
            await self.on_connection(comm)
        except CommClosedError:
            logger.info("connection through the broker closed before the Dask handshake")
            return
        await self.handle_comm(comm)


class BrokerBackend(Backend):
    def get_connector(self):
        return BrokerConnector()

    def get_listener(self, loc, handle_comm, deserialize, **connection_args):
        return BrokerListener(loc, handle_comm, deserialize, **connection_args)

    def get_address_host(self, loc):
        # Each endpoint is its own "host": they share only the broker's address.
        host, _, eid = parse_loc(loc)
        return eid or host

    def get_address_host_port(self, loc):
        host, port, _ = parse_loc(loc)
        return host, port

    def resolve_address(self, loc):
        return loc

    def get_local_address_for(self, loc):
        host, port, _ = parse_loc(loc)
        return f"{host}:{port}"

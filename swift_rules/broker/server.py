"""The connection broker: one open port through which every Dask endpoint reaches every other.

Endpoints (schedulers, workers, nannies) hold a *control connection* to the broker,
opened by themselves. A connection to an endpoint is set up as a *reverse connection*:
the connecting side opens a connection to the broker naming the target, the broker asks
the target over its control connection to open a fresh *data connection*, and then
relays bytes between the two sockets. Nobody ever connects in to an endpoint.

Why a fresh connection per Dask comm, not multiplexing over the control connection:
each relayed comm is then an ordinary TCP stream end to end (its own flow control, no
head-of-line blocking of a small scheduler message behind a large worker-to-worker
transfer), the relay is a plain byte copy with no framing of its own, and the endpoint
wraps the socket in Dask's own TCP comm (its framing and serialisation unchanged). See
docs/broker.md for the figures.

The broker is not an open relay: every connection authenticates with the shared token
or a run token (swift_rules.broker.protocol); refused peers, taken endpoint ids, unknown
tickets, malformed or oversized lines are logged and closed, and never stop the broker.
Connections that have not authenticated yet have their own, smaller limits (in all and
per source address) and a short timeout, so that idle sockets cannot take the slots
of real endpoints; a peer turned away for that is told "busy" and tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field

from swift_rules.broker import protocol, splice
from swift_rules.broker.protocol import ID_PATTERN, MAX_LINE, ProtocolError

logger = logging.getLogger("swift_rules.broker")

# Relay buffering: how much one direction may hold before it stops reading its source.
WRITE_HIGH_WATER = 4 * 1024 * 1024


class Refused(Exception):
    """A request the broker refuses; the message is sent to the peer and logged."""


@dataclass
class Stats:
    registered: int = 0
    relays: int = 0
    refused: int = 0
    bytes_relayed: int = 0
    refusals: list[str] = field(default_factory=list)


class Conn(asyncio.Protocol):
    """One TCP connection to the broker: handshake, then control or relay."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self.transport: asyncio.Transport | None = None
        self.peer: Conn | None = None  # the other end, once relaying
        self.endpoint: str | None = None  # the id, if this is a control connection
        self.mode = "handshake"
        self.buf = bytearray()
        self.line: asyncio.Future = asyncio.get_running_loop().create_future()
        self.nonces = ("", "")  # (peer's, broker's), for the ok reply's MAC
        self.key = broker.token  # the MAC key: the token's, or the peer's run token's
        self.run: str | None = None  # a run token's run: its ids must start with "RUN."
        self.addr = self.host = "?"
        self.handshaking = False  # counted in the broker's handshake limits

    # asyncio callbacks -------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.host = str(peer[0]) if peer else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _keepalive(sock)
        self.broker.accepted(self)

    def data_received(self, data):
        if self.mode == "relay":
            self.broker.stats.bytes_relayed += len(data)
            if not self.peer.transport.is_closing():
                self.peer.transport.write(data)
            return
        if self.mode == "control":
            return  # endpoints send nothing on it; ignore rather than buffer
        self.buf += data
        end = self.buf.find(b"\n")
        if end >= 0 and not self.line.done():
            # One request per connection: stop reading until it is answered.
            self.transport.pause_reading()
            self.line.set_result(bytes(self.buf[:end]))
            del self.buf[: end + 1]
        elif len(self.buf) > MAX_LINE and not self.line.done():
            self.transport.pause_reading()
            self.line.set_exception(ProtocolError(f"no end of line within {MAX_LINE} bytes"))

    def pause_writing(self):
        # Our outgoing buffer is full: stop reading from the side that fills it.
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self):
        if self.peer is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc):
        if not self.line.done():
            self.line.set_exception(ConnectionResetError("peer closed the connection"))
        if self.peer is not None and self.mode == "relay":
            self.peer.transport.close()  # flushes what is buffered, then closes
        self.broker.closed(self)

    # helpers ------------------------------------------------------------------------
    def send(self, msg: dict):
        self.transport.write(protocol.encode(msg))

    def ok(self):
        self.send({"ok": True, "mac": protocol.reply_mac(self.key, *self.nonces)})

    def refuse(self, why: str):
        if not self.transport.is_closing():
            self.send({"ok": False, "error": why})
            self.transport.close()

    def __repr__(self):
        return f"{self.addr}" + (f" ({self.endpoint})" if self.endpoint else "")


def _keepalive(sock: socket.socket):
    """Notice dead peers (a control connection whose endpoint vanished) within a minute."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Broker:
    """The broker server. ``await start()``, then it serves until ``close()``."""

    def __init__(
        self,
        token: bytes,
        host: str = "0.0.0.0",
        port: int = protocol.DEFAULT_PORT,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100_000,
        handshake_timeout: float = 5.0,
        open_timeout: float = 10.0,
        use_splice: bool = True,
        max_handshakes: int = 1024,
        max_handshakes_per_source: int = 128,
    ):
        self.token = token
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.max_handshakes = max_handshakes
        self.max_handshakes_per_source = max_handshakes_per_source
        self.handshakes: dict[str, int] = {}  # source address -> connections in the handshake
        self.open_timeout = open_timeout
        self.endpoints: dict[str, Conn] = {}
        self.pending: dict[str, tuple[str, asyncio.Future]] = {}  # ticket: (id, data conn)
        self.conns: set[Conn] = set()
        self.kernel_relays: set[splice.KernelRelay] = set()
        self.splice = use_splice
        self.tasks: set[asyncio.Task] = set()
        self.stats = Stats()
        self.server: asyncio.Server | None = None

    async def start(self) -> Broker:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Conn(self), self.host, self.port, ssl=self.ssl_context, backlog=4096,
            ssl_handshake_timeout=self.handshake_timeout if self.ssl_context else None,
        )  # fmt: skip
        self.port = self.server.sockets[0].getsockname()[1]
        logger.info("broker listening on %s:%d", self.host, self.port)
        return self

    async def close(self):
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            conn.transport.abort()
        for relay in list(self.kernel_relays):
            relay.close()
        for task in list(self.tasks):
            task.cancel()

    # connection life cycle -------------------------------------------------------------
    def accepted(self, conn: Conn):
        if len(self.conns) + 2 * len(self.kernel_relays) >= self.max_connections:
            self._refused(conn, f"too many connections (limit {self.max_connections})")
            return
        busy = self._handshake_limit(conn.host)
        if busy:
            self._refused(conn, f"busy: {busy}")
            return
        conn.handshaking = True
        self.handshakes[conn.host] = self.handshakes.get(conn.host, 0) + 1
        self.conns.add(conn)
        task = asyncio.ensure_future(self._handle(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _handshake_limit(self, host: str) -> str | None:
        """Why a new connection from ``host`` may not start a handshake now (None: it may)."""
        if sum(self.handshakes.values()) >= self.max_handshakes:
            return f"too many connections in the handshake (limit {self.max_handshakes})"
        if self.handshakes.get(host, 0) >= self.max_handshakes_per_source:
            limit = self.max_handshakes_per_source
            return f"too many connections in the handshake from {host} (limit {limit})"
        return None

    def _handshake_over(self, conn: Conn):
        if conn.handshaking:
            conn.handshaking = False
            left = self.handshakes[conn.host] - 1
            if left:
                self.handshakes[conn.host] = left
            else:
                del self.handshakes[conn.host]

    def closed(self, conn: Conn):
        self._handshake_over(conn)
        self.conns.discard(conn)
        if conn.endpoint is not None and self.endpoints.get(conn.endpoint) is conn:
            del self.endpoints[conn.endpoint]
            logger.info(
                "endpoint %s unregistered (connection from %s closed)", conn.endpoint, conn.addr
            )

    def _refused(self, conn: Conn, why: str):
        self.stats.refused += 1
        self.stats.refusals = [*self.stats.refusals[-99:], why]
        logger.warning("refused %s: %s", conn.addr, why)
        conn.refuse(why)

    async def _handle(self, conn: Conn):
        broker_nonce = protocol.nonce()
        conn.send({"broker": "swift-rules", "version": protocol.VERSION, "nonce": broker_nonce})
        try:
            line = await asyncio.wait_for(conn.line, self.handshake_timeout)
            request = protocol.decode(line)
            self._authenticate(conn, request, broker_nonce)
            self._handshake_over(conn)
            op = request.get("op")
            if op == "register":
                self._register(conn, request)
            elif op == "connect":
                await self._connect(conn, request)
            elif op == "data":
                self._data(conn, request)
            else:
                raise Refused(f"unknown op {op!r}")
        except (Refused, ProtocolError) as err:
            self._refused(conn, str(err))
        except TimeoutError:
            self._refused(conn, f"no request within {self.handshake_timeout:g} s")
        except ConnectionError:
            pass  # the peer went away; connection_lost cleaned up
        except Exception:  # a bug here must not take the broker down
            logger.exception("error handling %s", conn.addr)
            conn.transport.abort()

    def _authenticate(self, conn: Conn, request: dict, broker_nonce: str):
        key, run, expires = self.token, request.get("run"), request.get("expires")
        if run is not None:  # a run token: its key is made from ours
            if not (isinstance(run, str) and protocol.RUN_PATTERN.match(run)):
                raise Refused(f"bad run name {run!r}")
            if not isinstance(expires, int) or isinstance(expires, bool):
                raise Refused("a run token needs an integer 'expires'")
            key = protocol.run_key(self.token, run, expires)
        expected = protocol.request_mac(key, broker_nonce, request)
        if not protocol.same(request.get("mac"), expected):
            raise Refused("authentication failed (wrong or missing broker token)")
        if run is not None and expires < time.time():
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
            raise Refused(f"the run token of run {run!r} expired at {when}")
        cnonce = request.get("cnonce")
        if not isinstance(cnonce, str) or len(cnonce) > 64:
            raise Refused("bad cnonce")
        conn.nonces, conn.key, conn.run = (cnonce, broker_nonce), key, run

    @staticmethod
    def _endpoint_id(conn: Conn, request: dict, key: str) -> str:
        value = request.get(key)
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            raise Refused(f"bad endpoint id {value!r} (letters, digits, '._-', up to 128)")
        if conn.run is not None and not value.startswith(f"{conn.run}."):
            why = f"a token of run {conn.run!r} is for ids {conn.run}.* only, not {value!r}"
            raise Refused(why)
        return value

    # operations ----------------------------------------------------------------------
    def _register(self, conn: Conn, request: dict):
        eid = self._endpoint_id(conn, request, "id")
        holder = self.endpoints.get(eid)
        if holder is not None:
            raise Refused(f"endpoint id {eid!r} is already registered (from {holder.addr})")
        self.endpoints[eid] = conn
        conn.endpoint, conn.mode = eid, "control"
        conn.ok()
        conn.transport.resume_reading()  # to notice its close
        self.stats.registered += 1
        logger.info("endpoint %s registered from %s", eid, conn.addr)

    async def _connect(self, conn: Conn, request: dict):
        target = self._endpoint_id(conn, request, "target")
        control = self.endpoints.get(target)
        if control is None:
            raise Refused(f"no endpoint {target!r} is registered at this broker")
        ticket = secrets.token_hex(16)
        answer = asyncio.get_running_loop().create_future()
        self.pending[ticket] = (target, answer)
        spliced = False
        try:
            control.send({"op": "open", "ticket": ticket})
            data = await asyncio.wait_for(asyncio.shield(answer), self.open_timeout)
            if conn.transport.is_closing():
                return  # the connecting side gave up meanwhile
            self._splice(conn, data)
            spliced = True
        except TimeoutError:
            why = f"endpoint {target!r} did not answer within {self.open_timeout:g} s"
            raise Refused(why) from None
        finally:
            self.pending.pop(ticket, None)
            if answer.done() and not spliced:
                answer.result().transport.close()  # a data connection nobody will use
        logger.debug("relay %s -> %s", conn.addr, target)

    def _data(self, conn: Conn, request: dict):
        eid = self._endpoint_id(conn, request, "id")
        entry = self.pending.get(request.get("ticket"))
        if entry is None or entry[0] != eid or entry[1].done():
            raise Refused(f"unknown ticket for endpoint {eid!r}")
        entry[1].set_result(conn)

    def _splice(self, a: Conn, b: Conn):
        a.peer, b.peer = b, a
        for side in (a, b):
            side.mode = "relay"
            side.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
            side.ok()
        self.stats.relays += 1
        if self._in_kernel(a, b):
            return
        for side in (a, b):
            if side.buf:  # bytes sent after the request line belong to the relay
                side.peer.transport.write(bytes(side.buf))
                side.buf.clear()
            side.transport.resume_reading()

    def _in_kernel(self, a: Conn, b: Conn) -> bool:
        """Hand the pair to a KernelRelay where it can take it: plain TCP on Linux, the
        ``ok`` lines sent, no early bytes waiting. Else the transports relay."""
        if not (self.splice and splice.AVAILABLE) or self.ssl_context is not None:
            return False
        if any(side.buf or side.transport.get_write_buffer_size() for side in (a, b)):
            return False
        fds = []
        for side in (a, b):
            fds.append(os.dup(side.transport.get_extra_info("socket").fileno()))
            side.mode = "kernel"  # connection_lost: leave the peer alone
            side.transport.abort()  # closes its descriptor; the duplicate lives on
        self.kernel_relays.add(splice.KernelRelay(*fds, on_close=self._relay_closed))
        return True

    def _relay_closed(self, relay):
        self.kernel_relays.discard(relay)
        self.stats.bytes_relayed += relay.moved


async def serve(broker: Broker, ready=None):
    """Start ``broker`` and serve until cancelled (the CLI's loop)."""
    await broker.start()
    if ready is not None:
        ready(broker)
    try:
        await asyncio.Event().wait()
    finally:
        await broker.close()

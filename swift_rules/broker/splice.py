"""Relaying two sockets in the kernel: splice(2) through a pipe, bytes never in Python.

Copying through asyncio transports costs the broker about a CPU second per GB relayed
(every chunk read into a Python bytes object and written out again); on a busy host
that halves relayed throughput. ``os.splice`` moves the pages socket -> pipe -> socket
inside the kernel. Linux only, and plain TCP only (TLS needs the bytes in user space):
the broker falls back to the transport relay otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket

PIPE_SIZE = 1 << 20  # bytes in flight per direction
_F_SETPIPE_SZ = 1031
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
AVAILABLE = hasattr(os, "splice")


class _Pump:
    """One direction: ``src`` -> pipe -> ``dst``. Stops reading while ``dst`` is full."""

    def __init__(self, relay: KernelRelay, src: int, dst: int):
        self.relay, self.src, self.dst = relay, src, dst
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        self.pending = 0  # bytes in the pipe
        self.eof = self.blocked = self.done = False
        relay.loop.add_reader(src, self.readable)

    def readable(self):
        try:
            n = os.splice(self.src, self.w, PIPE_SIZE, flags=_FLAGS)
        except BlockingIOError:
            n = None  # the pipe is full, or nothing to read after all
        except OSError:
            self.relay.close()
            return
        if n == 0:
            self.eof = True
            self.relay.loop.remove_reader(self.src)
        elif n:
            self.pending += n
            self.relay.moved += n
        self.drain()

    def drain(self):
        while self.pending:
            try:
                n = os.splice(self.r, self.dst, self.pending, flags=_FLAGS)
            except BlockingIOError:
                # dst cannot take more: wait for it, and stop reading src meanwhile.
                if not self.blocked:
                    self.blocked = True
                    self.relay.loop.remove_reader(self.src)
                    self.relay.loop.add_writer(self.dst, self.writable)
                return
            except OSError:
                self.relay.close()
                return
            self.pending -= n
        if self.eof and not self.done:
            self.done = True
            self.relay.half_closed(self)

    def writable(self):
        self.blocked = False
        self.relay.loop.remove_writer(self.dst)
        self.drain()
        if not (self.blocked or self.eof or self.relay.closed):
            self.relay.loop.add_reader(self.src, self.readable)

    def close(self):
        self.relay.loop.remove_reader(self.src)
        self.relay.loop.remove_writer(self.dst)
        os.close(self.r)
        os.close(self.w)


class KernelRelay:
    """Both directions between the sockets ``a`` and ``b`` (file descriptors it owns)."""

    def __init__(self, a: int, b: int, on_close=None):
        self.loop = asyncio.get_running_loop()
        self.fds = (a, b)
        self.moved = 0
        self.closed = False
        self.on_close = on_close
        self.pumps = (_Pump(self, a, b), _Pump(self, b, a))

    def half_closed(self, pump: _Pump):
        """``pump.src`` ended and everything has been passed on: end ``pump.dst`` too."""
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(pump.dst)) as sock:
            sock.shutdown(socket.SHUT_WR)
        if all(p.done for p in self.pumps):
            self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        for pump in self.pumps:
            pump.close()
        for fd in self.fds:
            os.close(fd)
        if self.on_close is not None:
            self.on_close(self)

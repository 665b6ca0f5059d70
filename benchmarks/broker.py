"""The connection broker's cost: relayed against direct Dask comms, and its footprint.

Three processes on this machine: the broker (``swift-rules broker serve``), a receiver
(a Dask comm listener, ``tcp://`` or ``broker://``) and this script as the sender, all
using Dask's own comm layer (``distributed.comm.connect`` / ``listen``), so the figures
include Dask's framing and serialisation on both paths. Then one process registers
many endpoints (and opens a relayed comm to each) to measure the broker's memory and
file descriptors.

On one machine, a relayed transfer competes for the same cores as its sender and
receiver. ``--link-gbit`` (root, ``ip`` and ``tc``) also measures what happens between
hosts: each party gets a network namespace of its own on an emulated switch, with a link
limited to that many Gbit/s in each direction, and transfers run direct and relayed, one
pair alone and two pairs at once through the same broker.

    python benchmarks/broker.py [--repeat 5] [--size-mb 256] [--endpoints 1000]
                                [--link-gbit 1 2.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import machine, table

TOKEN = "benchmark-token-0123456789abcdef"


# -- the child processes -------------------------------------------------------------------
async def receiver(address: str):
    """Answer each message with its payload size (0 for pings)."""
    from distributed.comm import listen

    async def handle(comm):
        try:
            while True:
                msg = await comm.read()
                data = msg.get("data")
                await comm.write({"n": 0 if data is None else len(data)})
        except OSError:
            pass

    listener = listen(address, handle)
    await listener.start()
    print(listener.contact_address, flush=True)
    await asyncio.Event().wait()


async def endpoints(broker: str, count: int):
    """Register ``count`` endpoints, then open one relayed comm to each; hold them."""
    from distributed.comm import connect, listen

    async def handle(comm):
        await comm.read()

    listeners = [listen(f"broker://{broker}", handle) for _ in range(count)]
    for chunk in range(0, count, 100):
        await asyncio.gather(*(lst.start() for lst in listeners[chunk : chunk + 100]))
    print("registered", flush=True)
    sys.stdin.readline()
    comms = []
    for chunk in range(0, count, 100):
        comms += await asyncio.gather(
            *(connect(lst.contact_address) for lst in listeners[chunk : chunk + 100])
        )
    print("connected", flush=True)
    sys.stdin.readline()


async def sender(address: str, size_mb: int, broker_pid: int):
    """Large transfers to ``address``; print GB/s (and the broker's CPU per GB) as JSON."""
    from distributed.comm import connect

    out = {}
    comm = await connect(address)
    await _transfers(comm, _payload(size_mb), broker_pid or None, out)
    await comm.close()
    print(json.dumps(out), flush=True)


# -- measurements ----------------------------------------------------------------------------
def proc_stats(pid: int) -> tuple[float, float, int]:
    """(CPU seconds, RSS MiB, open file descriptors) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS")
    )
    return cpu, rss, len(os.listdir(f"/proc/{pid}/fd"))


def _payload(size_mb: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size_mb << 20, dtype=np.uint8)


async def measure(address: str, size_mb: int, broker_pid: int | None) -> dict:
    from distributed.comm import connect

    out = {}
    # New connections: Dask's connect() with its handshake, and close.
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        comm = await connect(address)
        times.append(time.perf_counter() - t0)
        await comm.close()
    out["connect_ms"] = 1e3 * statistics.median(times)
    comm = await connect(address)
    # Small messages: round trips on one comm.
    times = []
    for _ in range(2000):
        t0 = time.perf_counter()
        await comm.write({"op": "ping"})
        await comm.read()
        times.append(time.perf_counter() - t0)
    out["rtt_ms"] = 1e3 * statistics.median(times)
    await _transfers(comm, _payload(size_mb), broker_pid, out)
    await comm.close()
    return out


async def _transfers(comm, payload: np.ndarray, broker_pid: int | None, out: dict) -> None:
    """Large transfers: payload there, tiny answer back."""
    from distributed.protocol import to_serialize

    cpu0 = proc_stats(broker_pid)[0] if broker_pid else 0.0
    rates, moved = [], 0
    for _ in range(4):
        t0 = time.perf_counter()
        await comm.write({"data": to_serialize(payload)})
        assert (await comm.read())["n"] == payload.nbytes
        rates.append(payload.nbytes / (time.perf_counter() - t0) / 1e9)
        moved += payload.nbytes
    out["gb_s"] = statistics.median(rates)
    if broker_pid:
        out["cpu_s_per_gb"] = (proc_stats(broker_pid)[0] - cpu0) / (moved / 1e9)


def _raw_request(port: int, op: dict) -> socket.socket:
    """A broker connection after its ``ok``: the protocol by hand, no Dask."""
    from swift_rules.broker import protocol

    sock = socket.create_connection(("127.0.0.1", port))
    f = sock.makefile("rb", buffering=0)
    hello = json.loads(f.readline())
    request = {**op, "cnonce": protocol.nonce()}
    request["mac"] = protocol.request_mac(TOKEN.encode(), hello["nonce"], request)
    sock.sendall(protocol.encode(request))
    if op["op"] != "register":  # (a register's ok is read by the caller, then its opens)
        assert json.loads(f.readline())["ok"]
    f.close()
    return sock


def raw_rate(send: socket.socket, recv: socket.socket, nbytes: int = 2 << 30) -> float:
    """GB/s of plain bytes from ``send`` to ``recv``, both driven from this process."""

    def sink():
        buf, got = bytearray(4 << 20), 0
        while got < nbytes:
            got += recv.recv_into(buf)

    thread = threading.Thread(target=sink)
    chunk, sent, t0 = memoryview(bytearray(4 << 20)), 0, time.perf_counter()
    thread.start()
    while sent < nbytes:
        send.sendall(chunk)
        sent += len(chunk)
    thread.join()
    return nbytes / (time.perf_counter() - t0) / 1e9


def raw_pair(via: str | None) -> tuple[socket.socket, socket.socket]:
    """Two connected sockets: directly (``via`` None), or spliced by the broker at ``via``."""
    if via is None:
        with socket.create_server(("127.0.0.1", 0)) as server:
            a = socket.create_connection(server.getsockname())
            return a, server.accept()[0]
    port = int(via.rsplit(":", 1)[1])
    control = _raw_request(port, {"op": "register", "id": "raw"})
    lines = control.makefile("rb", buffering=0)
    assert json.loads(lines.readline())["ok"]
    out = {}
    thread = threading.Thread(
        target=lambda: out.update(a=_raw_request(port, {"op": "connect", "target": "raw"}))
    )
    thread.start()
    ticket = json.loads(lines.readline())["ticket"]
    b = _raw_request(port, {"op": "data", "id": "raw", "ticket": ticket})
    thread.join()
    lines.close()
    control.close()
    return out["a"], b


class Hosts:
    """Hosts on a switch, emulated: a network namespace per host, each linked to one
    bridge by a veth pair limited to ``gbit`` Gbit/s in each direction (tc tbf), like a
    NIC. Between two hosts a transfer is limited by the links, not by this machine's
    loopback, and a relayed one crosses the broker host's link twice (in and out)."""

    def __init__(self, names: list[str], gbit: float):
        self.names, self.gbit, self.bridge = names, gbit, "sbkbr0"
        self.ip = {name: f"10.77.0.{i + 2}" for i, name in enumerate(names)}

    @staticmethod
    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    def limit(self, dev: str, ns: str | None = None) -> None:
        rate = f"{self.gbit * 1000:.0f}mbit"
        # burst: at least one 64 KiB GSO segment, and 2 ms at the link's rate.
        burst = max(64 << 10, int(self.gbit * 1e9 / 8 * 0.002))
        prefix = ("ip", "netns", "exec", ns) if ns else ()
        self.sh(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                "burst", str(burst), "latency", "20ms")  # fmt: skip

    def __enter__(self):
        self.__exit__()
        self.sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.sh("ip", "link", "set", self.bridge, "up")
        for i, name in enumerate(self.names):
            ns, out, inside = f"sbkh-{name}", f"sbkh{i}a", f"sbkh{i}b"
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "link", "add", out, "type", "veth", "peer", "name", inside)
            self.sh("ip", "link", "set", inside, "netns", ns)
            self.sh("ip", "link", "set", out, "master", self.bridge, "up")
            self.sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.ip[name]}/24",
                    "dev", inside)  # fmt: skip
            self.sh("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up")
            self.sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            self.limit(out)  # towards the host
            self.limit(inside, ns)  # from the host
        return self

    def __exit__(self, *exc):
        for i, name in enumerate(self.names):
            subprocess.run(["ip", "netns", "del", f"sbkh-{name}"], capture_output=True)
            subprocess.run(["ip", "link", "del", f"sbkh{i}a"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def on(self, name: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", f"sbkh-{name}", *cmd]


PAIRS = [("send1", "recv1"), ("send2", "recv2")]


def between_hosts(gbit: float, repeat: int, size_mb: int, env: dict) -> list[list[str]]:
    """Table rows: direct and relayed transfers over emulated ``gbit`` links."""
    rates = {(scheme, n): [] for scheme in ("tcp", "broker") for n in (1, 2)}
    cpu = []
    with Hosts(["broker", *(host for pair in PAIRS for host in pair)], gbit) as hosts:
        broker = subprocess.Popen(
            hosts.on("broker", [sys.executable, "-m", "swift_rules.cli", "broker", "serve",
                                "--host", hosts.ip["broker"], "--port", "0",
                                "--log-level", "WARNING"]),
            stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        via = broker.stderr.readline().strip().rsplit(" ", 1)[1]
        try:
            for _ in range(repeat):  # interleaved
                for scheme, n in rates:
                    outs = pair_transfers(hosts, scheme, n, via, broker.pid, size_mb, env)
                    rates[scheme, n].append(statistics.mean(o["gb_s"] for o in outs))
                    cpu += [o["cpu_s_per_gb"] for o in outs if "cpu_s_per_gb" in o]
        finally:
            stop(broker)

    def cells(n):
        tcp, relayed = (statistics.median(rates[scheme, n]) for scheme in ("tcp", "broker"))
        link = gbit / 8
        return [
            f"{tcp:.3f} ({tcp / link:.0%} of link)",
            f"{relayed:.3f} ({relayed / link:.0%} of link)",
            f"{relayed / tcp:.0%}",
        ]

    return [
        [f"{gbit:g} Gbit/s", "one pair", *cells(1), f"{statistics.median(cpu):.2f}"],
        [f"{gbit:g} Gbit/s", "two pairs at once, each", *cells(2), ""],
    ]


def pair_transfers(hosts, scheme, n, via, broker_pid, size_mb, env) -> list[dict]:
    """``n`` senders at once, each to a receiver on another host (through the broker for
    ``scheme`` "broker"); each sender's results. The broker's CPU is read for one pair."""
    me = [sys.executable, __file__, "--child"]
    receivers, senders = [], []
    try:
        for send, recv in PAIRS[:n]:
            at = f"tcp://{hosts.ip[recv]}:0" if scheme == "tcp" else f"broker://{via}"
            receiver_, address = start(hosts.on(recv, [*me, "receiver", at]), env)
            receivers.append(receiver_)
            pid = broker_pid if scheme == "broker" and n == 1 else 0
            senders.append((send, address, pid))
        running = [
            subprocess.Popen(hosts.on(send, [*me, "sender", address, str(size_mb), str(pid)]),
                             stdout=subprocess.PIPE, env=env, text=True)
            for send, address, pid in senders
        ]  # fmt: skip
        return [json.loads(p.communicate()[0]) for p in running]
    finally:
        stop(*receivers)


def start(cmd: list[str], env: dict, stdin=None) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=stdin, env=env, text=True)
    return p, p.stdout.readline().strip()


def stop(*procs):
    for p in procs:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--endpoints", type=int, default=1000)
    ap.add_argument(
        "--pin",
        action="store_true",
        help="sender and receiver on CPU 0, the brokers on CPU 1 (a core of their own)",
    )
    ap.add_argument(
        "--link-gbit",
        type=float,
        nargs="*",
        default=[1.0, 2.5],
        help="also measure between emulated hosts with links of these Gbit/s (root, ip, tc; "
        "none: skip)",
    )
    ap.add_argument("--links-only", action="store_true", help="only the emulated hosts")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        role, *rest = args.child
        if role == "receiver":
            asyncio.run(receiver(rest[0]))
        elif role == "sender":
            asyncio.run(sender(rest[0], int(rest[1]), int(rest[2])))
        else:
            asyncio.run(endpoints(rest[0], int(rest[1])))
        return

    load = Path("/proc/loadavg").read_text().split()[0]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "token").write_text(TOKEN)
    env = {**os.environ, "DASK_BROKER_TOKEN_FILE": str(tmp / "token")}
    os.environ.update(env)
    if not args.links_only:
        on_one_machine(args, env, load)
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if not args.link_gbit:
        return
    if missing or os.geteuid() != 0:
        print(f"(between emulated hosts: skipped, it needs root and ip, tc; missing: "
              f"{missing or 'root'})")  # fmt: skip
        return
    size = min(args.size_mb, 64)  # 0.5 s per message at 1 Gbit/s
    rows = []
    for gbit in args.link_gbit:
        rows += between_hosts(gbit, args.repeat, size, env)
    table(
        f"Between emulated hosts: Dask transfers of {size} MiB, direct (tcp://) and through "
        f"the broker on a host of its own, every host's link limited to the same rate; "
        f"GB/s, medians of {args.repeat}; load average before: {load}",
        ["links", "transfers", "tcp://", "broker://", "broker vs tcp", "broker CPU s/GB"],
        rows,
    )


def on_one_machine(args, env: dict, load: str) -> None:
    """Broker, sender and receiver as processes of this machine; the endpoint footprint."""
    me = [sys.executable, __file__, "--child"]

    def serve(*extra):
        p = subprocess.Popen(
            [sys.executable, "-m", "swift_rules.cli", "broker", "serve", "--host", "127.0.0.1",
             "--port", "0", "--log-level", "WARNING", *extra],
            stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        return p, p.stderr.readline().strip().rsplit(" ", 1)[1]

    # The broker relays with splice(2); "copy" is its fallback (asyncio transports).
    (broker, via), (copier, via_copy) = serve(), serve("--no-splice")
    if args.pin:  # the receivers, started later, inherit this process's CPU
        os.sched_setaffinity(0, {0})
        for p in (broker, copier):
            os.sched_setaffinity(p.pid, {1})
    where = {"tcp": ("tcp://127.0.0.1:0", None), "broker": (f"broker://{via}", broker.pid),
             "copy": (f"broker://{via_copy}", copier.pid)}  # fmt: skip
    results = {scheme: [] for scheme in where}
    try:
        for _ in range(args.repeat):  # interleaved, so that other load hits all alike
            for scheme, (listen_at, pid) in where.items():
                recv, address = start([*me, "receiver", listen_at], env)
                try:
                    results[scheme].append(asyncio.run(measure(address, args.size_mb, pid)))
                finally:
                    stop(recv)
        # Plain bytes, sender and receiver as two threads of this process (about one
        # core): what the relay alone can carry when it has the other core.
        raw = {scheme: [] for scheme in where}
        for _ in range(args.repeat):
            for scheme, at in (("tcp", None), ("broker", via), ("copy", via_copy)):
                a, b = raw_pair(at)
                raw[scheme].append(raw_rate(a, b))
                a.close()
                b.close()
        idle = proc_stats(broker.pid)
        holder, _ = start([*me, "endpoints", via, str(args.endpoints)], env, subprocess.PIPE)
        registered = proc_stats(broker.pid)
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.stdout.readline()
        connected = proc_stats(broker.pid)
        holder_stats = proc_stats(holder.pid)
        stop(holder)
    finally:
        stop(broker, copier)

    def med(scheme, key):
        return statistics.median(r[key] for r in results[scheme])

    pinned = "; sender and receiver on CPU 0, brokers on CPU 1" if args.pin else ""
    print(f"machine: {machine()}; {args.repeat} repeats, medians; {args.size_mb} MiB payloads"
          f"{pinned}; load average before: {load}\n")  # fmt: skip

    def row(label, key, fmt, delta):
        tcp, out = med("tcp", key), [label, fmt.format(med("tcp", key))]
        for scheme in ("broker", "copy"):
            value = med(scheme, key)
            out += [fmt.format(value), delta(value, tcp)]
        return out

    def ratio(value, tcp):
        return f"{value / tcp:.0%}"

    def plus(unit):
        return lambda value, tcp: f"+{value - tcp:.2f} {unit}"

    table(
        "Relayed (broker://) against direct (tcp://) Dask comms, one machine",
        ["measure", "tcp://", "broker:// (splice)", "vs tcp", "broker:// (copy)", "vs tcp"],
        [
            row(f"large transfer, GB/s ({args.size_mb} MiB messages)", "gb_s", "{:.2f}", ratio),
            row("new connection (connect + Dask handshake), ms", "connect_ms", "{:.2f}",
                plus("ms")),
            row("small message round trip, ms", "rtt_ms", "{:.3f}", plus("ms")),
            ["plain bytes, no Dask (sender and receiver in one process), GB/s",
             f"{statistics.median(raw['tcp']):.2f}", f"{statistics.median(raw['broker']):.2f}",
             ratio(statistics.median(raw["broker"]), statistics.median(raw["tcp"])),
             f"{statistics.median(raw['copy']):.2f}",
             ratio(statistics.median(raw["copy"]), statistics.median(raw["tcp"]))],
            ["broker CPU per GB relayed, s", "-", f"{med('broker', 'cpu_s_per_gb'):.2f}", "",
             f"{med('copy', 'cpu_s_per_gb'):.2f}", ""],
        ],
    )  # fmt: skip
    n = args.endpoints
    table(
        f"Broker footprint with {n} registered endpoints (one simulating process)",
        ["state", "broker RSS, MiB", "broker fds", "endpoints' process RSS, MiB"],
        [
            ["idle", f"{idle[1]:.0f}", idle[2], "-"],
            [f"{n} endpoints registered", f"{registered[1]:.0f}", registered[2], "-"],
            [f"+ {n} open relayed comms", f"{connected[1]:.0f}", connected[2],
             f"{holder_stats[1]:.0f}"],
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

"""The Dask connection broker (swift_rules.broker): real broker, scheduler and worker
processes. The firewall tests put the workers in a Linux network namespace whose
nftables firewall drops every inbound connection (they need root, ip and nft)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from fakes.netns import Namespace, brought_up
from helpers import load_result

from swift_rules.backends.broker_comm import BrokerBackend
from swift_rules.broker import protocol

PY = sys.executable
REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "swift-rules-test-token-0123456789"
# Dask retries connections until this; it bounds how long a firewalled transfer hangs.
CONNECT_TIMEOUT = "4s"


# -- processes -------------------------------------------------------------------------
def _env(token_file: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop(protocol.TOKEN_ENV, None)
    if token_file is not None:
        env[protocol.TOKEN_FILE_ENV] = str(token_file)
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = CONNECT_TIMEOUT
    env["PYTHONUNBUFFERED"] = "1"
    # The tasks are this module's functions (pickled by reference).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    return env


class Proc:
    """A child process whose output goes to a log file; stopped by kill(), never leaked."""

    def __init__(self, cmd: list[str], log: Path, env: dict):
        self.log = log
        self.handle = open(log, "wb")
        self.popen = subprocess.Popen(cmd, stdout=self.handle, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in {self.log} within {timeout} s:\n{self.text()}")

    def kill(self, sig=signal.SIGKILL):
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.handle.close()


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.kill()


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("broker") / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)  # the broker refuses a token file that others may read
    return path


def start_broker(
    procs, tmp_path, token_file, host="127.0.0.1", port=0, name="broker", extra=()
) -> Proc:
    cmd = [PY, "-m", "swift_rules.cli", "broker", "serve", "--host", host, "--port", str(port)]
    cmd += ["--token-file", str(token_file), "--log-level", "DEBUG", *extra]
    p = Proc(cmd, tmp_path / f"{name}.log", _env())
    procs.append(p)
    p.port = int(p.wait_for(r"broker listening on \S+:(\d+)").group(1))
    return p


def start_scheduler(procs, tmp_path, token_file, host, protocol_=None, prefix=()) -> str:
    sched_file = tmp_path / f"scheduler-{len(procs)}.json"
    cmd = [
        *prefix,
        PY,
        "-m",
        "distributed.cli.dask_scheduler",
        "--host",
        host,
        "--no-dashboard",
        "--scheduler-file",
        str(sched_file),
    ]
    if protocol_:
        cmd += ["--protocol", protocol_]
    else:
        cmd += ["--port", "0"]
    p = Proc(cmd, tmp_path / f"scheduler-{len(procs)}.log", _env(token_file))
    procs.append(p)
    p.wait_for(r"Scheduler at:")
    return json.loads(sched_file.read_text())["address"]


def start_worker(procs, tmp_path, token_file, scheduler, host, name, nanny=False, prefix=()):
    cmd = [
        *prefix,
        PY,
        "-m",
        "distributed.cli.dask_worker",
        scheduler,
        "--host",
        host,
        "--name",
        name,
        "--nthreads",
        "1",
        "--no-dashboard",
        "--nanny" if nanny else "--no-nanny",
    ]
    p = Proc(cmd, tmp_path / f"worker-{name}.log", _env(token_file))
    procs.append(p)
    return p


def connect_client(address, token_file, monkeypatch, workers=0):
    from distributed import Client

    monkeypatch.setenv(protocol.TOKEN_FILE_ENV, str(token_file))
    client = Client(address, timeout=30)
    if workers:
        client.wait_for_workers(workers, timeout=60)
    return client


# -- the computation: results made on one worker and used on the other -------------------
def make(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def combine(a: np.ndarray, b: np.ndarray) -> list:
    # No BLAS (its threads may sum in another order): numpy's own sums are reproducible.
    return [float(np.sum(a * b)), hashlib.sha256(b.tobytes()).hexdigest()]


def worker_to_worker(client, timeout: float, n: int = 2_000_000):
    """Two arrays made on different workers, combined on the first: one transfer each way
    of the second array (worker b -> worker a) and of the result (a -> client)."""
    names = sorted(client.scheduler_info()["workers"].values(), key=lambda w: w["name"])
    a, b = names[0]["id"], names[1]["id"]
    x = client.submit(make, 1, n, workers=[a], pure=False)
    y = client.submit(make, 2, n, workers=[b], pure=False)
    z = client.submit(combine, x, y, workers=[a], pure=False)
    return z.result(timeout=timeout)


# -- network namespace with a firewall ---------------------------------------------------
class Firewalled(Namespace):
    """A namespace 'behind a firewall': a veth pair to this namespace; its nftables
    input chain drops every new inbound connection (replies to its own are accepted)."""

    def __init__(self):
        super().__init__(os.getpid() % 100_000, name="swbrk", veth="sbk", subnet=231)

    def sh(self, *cmd, ns=False):
        full = [*(self.prefix if ns else ()), *cmd]
        subprocess.run(full, check=True, capture_output=True, text=True)

    def firewall(self, on: bool):
        if on:
            self.sh("nft", "add", "table", "inet", "swbrk", ns=True)
            self.sh(
                "nft",
                "add chain inet swbrk input { type filter hook input priority 0; policy accept; }",
                ns=True,
            )
            self.sh("nft", "add rule inet swbrk input ct state new drop", ns=True)
        else:
            self.sh("nft", "delete", "table", "inet", "swbrk", ns=True)


@pytest.fixture(scope="module")
def netns():
    ns = brought_up(Firewalled(), needs=("ip", "nft"))
    yield ns
    ns.down()


# -- the real problem: workers behind a firewall ------------------------------------------
@pytest.mark.slow
def test_firewalled_workers_need_the_broker(netns, procs, tmp_path, token_file, monkeypatch):
    from distributed import Client

    # 1. No firewall, plain tcp: the reference result.
    sched = start_scheduler(procs, tmp_path, token_file, netns.host_ip)
    for name in ("w1", "w2"):
        start_worker(procs, tmp_path, token_file, sched, netns.ns_ip, name, prefix=netns.prefix)
    with Client(sched, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        reference = worker_to_worker(client, timeout=60)
    for p in procs[::-1]:
        p.kill()
    procs.clear()

    netns.firewall(True)
    try:
        # 2. Firewall, plain tcp: workers register (outbound), but nothing reaches them.
        sched = start_scheduler(procs, tmp_path, token_file, netns.host_ip)
        for name in ("w1", "w2"):
            start_worker(procs, tmp_path, token_file, sched, netns.ns_ip, name, prefix=netns.prefix)
        with Client(sched, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            with pytest.raises(Exception) as failed:  # times out, or fails
                worker_to_worker(client, timeout=10)
        print(f"plain tcp behind the firewall: {type(failed.value).__name__}: {failed.value}")
        for p in procs[::-1]:
            p.kill()
        procs.clear()

        # 3. Firewall, broker: every connection goes out to the broker (nannies too).
        broker = start_broker(procs, tmp_path, token_file, host=netns.host_ip)
        via = f"{netns.host_ip}:{broker.port}"
        sched = start_scheduler(procs, tmp_path, token_file, via, protocol_="broker")
        assert sched.startswith(f"broker://{via}/")
        for name in ("w1", "w2"):
            start_worker(
                procs, tmp_path, token_file, sched, via, name, nanny=True, prefix=netns.prefix
            )
        with connect_client(sched, token_file, monkeypatch, workers=2) as client:
            workers = client.scheduler_info()["workers"]
            assert all(addr.startswith(f"broker://{via}/") for addr in workers), workers
            assert worker_to_worker(client, timeout=60) == reference
        # A worker-to-worker transfer went through the broker: from the namespace to a
        # worker's endpoint id.
        ids = "|".join(re.escape(addr.rsplit("/", 1)[1]) for addr in workers)
        assert re.search(rf"relay {re.escape(netns.ns_ip)}:\d+ -> ({ids})", broker.text())
    finally:
        netns.firewall(False)


@pytest.mark.slow
def test_worker_dies_mid_transfer(netns, procs, tmp_path, token_file, monkeypatch):
    """The worker holding a large result is killed while the other fetches it through
    the broker; the scheduler recomputes it and the result is still right."""
    from distributed import wait

    netns.firewall(True)
    # Slow the namespace's outbound side, so that the transfer takes seconds.
    netns.sh(
        "tc",
        "qdisc",
        "add",
        "dev",
        netns.veth[1],
        "root",
        "tbf",
        "rate",
        "160mbit",
        "burst",
        "256kb",
        "latency",
        "400ms",
        ns=True,
    )
    try:
        broker = start_broker(procs, tmp_path, token_file, host=netns.host_ip)
        via = f"{netns.host_ip}:{broker.port}"
        sched = start_scheduler(procs, tmp_path, token_file, via, protocol_="broker")
        workers = {
            name: start_worker(procs, tmp_path, token_file, sched, via, name, prefix=netns.prefix)
            for name in ("a", "b")
        }
        with connect_client(sched, token_file, monkeypatch, workers=2) as client:
            info = client.scheduler_info()["workers"]
            addr = {w["name"]: a for a, w in info.items()}
            n = 10_000_000  # 80 MB: about 4 s at 160 Mbit/s
            x = client.submit(make, 3, n, workers=[addr["a"]], allow_other_workers=True, pure=False)
            wait(x, timeout=60)
            z = client.submit(np.sum, x, workers=[addr["b"]], pure=False)

            def fetching(dask_worker):
                return len(dask_worker.state.in_flight_tasks)

            deadline = time.monotonic() + 30
            while not client.run(fetching, workers=[addr["b"]])[addr["b"]]:
                assert time.monotonic() < deadline, "worker b never started fetching"
                time.sleep(0.05)
            time.sleep(0.5)
            workers["a"].kill()
            assert z.result(timeout=90) == pytest.approx(np.sum(make(3, n)))
        # The kill did land mid-transfer: b's fetch through the broker broke.
        workers["b"].wait_for("Worker stream died during communication")
        assert broker.popen.poll() is None, broker.text()
    finally:
        subprocess.run(
            [*netns.prefix, "tc", "qdisc", "del", "dev", netns.veth[1], "root"], capture_output=True
        )
        netns.firewall(False)


@pytest.mark.slow
def test_broker_restart(procs, tmp_path, token_file, monkeypatch):
    """A broker restart breaks every relayed connection. The scheduler registers again
    and keeps its address; a worker exits as Dask workers do when their scheduler
    connection breaks (its batch system replaces it), saying why; a new worker joins."""
    broker = start_broker(procs, tmp_path, token_file)
    via = f"127.0.0.1:{broker.port}"
    sched = start_scheduler(procs, tmp_path, token_file, via, protocol_="broker")
    scheduler = procs[-1]
    worker = start_worker(procs, tmp_path, token_file, sched, via, "w1", nanny=True)
    with connect_client(sched, token_file, monkeypatch, workers=1) as client:
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
    broker.kill()
    start_broker(procs, tmp_path, token_file, port=broker.port, name="broker2")
    scheduler.wait_for("registered again with the broker")
    worker.popen.wait(60)
    assert "scheduler-connection-broken" in worker.text()
    start_worker(procs, tmp_path, token_file, sched, via, "w2", nanny=True)
    with connect_client(sched, token_file, monkeypatch, workers=1) as client:
        assert client.submit(sum, [4, 5, 6]).result(timeout=60) == 15


# -- security: refused, logged, and the broker keeps serving --------------------------------
def _raw(port: int, request: bytes | None, token: bytes = TOKEN.encode()) -> dict:
    """Send one request line (signed with ``token`` unless ``request`` is raw bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rwb")
        hello = json.loads(f.readline())
        f.write(request(hello["nonce"]) if callable(request) else request)
        f.flush()
        line = f.readline()
        f.close()  # (the socket's fd stays open while its file is)
        return json.loads(line) if line else {}


def _signed(op: dict, token: bytes = TOKEN.encode()):
    def build(broker_nonce):
        req = {**op, "cnonce": protocol.nonce()}
        req["mac"] = protocol.request_mac(token, broker_nonce, req)
        return protocol.encode(req)

    return build


@pytest.fixture
def broker(procs, tmp_path, token_file):
    return start_broker(procs, tmp_path, token_file, extra=["--handshake-timeout", "1"])


def test_refusals_are_logged_and_the_broker_survives(broker):
    port = broker.port
    cases = {
        "authentication failed": _signed({"op": "register", "id": "x"}, b"not-the-token-0000"),
        "not a JSON": b"hello broker\n",
        "no end of line": b"x" * (protocol.MAX_LINE + 10),
        "unknown ticket": _signed({"op": "data", "id": "sched", "ticket": "forged"}),
        "bad endpoint id": _signed({"op": "register", "id": "../etc"}),
        "unknown op": _signed({"op": "shell"}),
    }
    for why, request in cases.items():
        reply = _raw(port, request)
        assert reply.get("ok") is False and why in reply["error"], (why, reply)
    # A peer that sends nothing (slowloris) is dropped after --handshake-timeout.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        f = silent.makefile("rb")
        f.readline()  # the broker's hello
        reply = json.loads(f.readline())
        f.close()
    assert reply["ok"] is False and "no request within 1 s" in reply["error"]
    # A forged id: the id is taken by a live registration.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as holder:
        f = holder.makefile("rwb")
        f.write(_signed({"op": "register", "id": "sched"})(json.loads(f.readline())["nonce"]))
        f.flush()
        assert json.loads(f.readline())["ok"] is True
        reply = _raw(port, _signed({"op": "register", "id": "sched"}))
        assert reply["ok"] is False and "already registered" in reply["error"]
        f.close()
    log = broker.wait_for("already registered").string
    for why in [*cases, "already registered"]:
        assert "refused 127.0.0.1" in log and why in log, why
    assert broker.popen.poll() is None
    # ...and still serves: the id is free again once its holder has gone.
    deadline = time.monotonic() + 10
    while _raw(port, _signed({"op": "register", "id": "sched"})).get("ok") is not True:
        assert time.monotonic() < deadline, broker.text()
        time.sleep(0.1)


def test_dask_sees_clear_errors(broker, token_file, tmp_path, monkeypatch):
    from distributed.comm import connect

    from swift_rules.backends.broker_comm import BrokerBackend

    address = f"broker://127.0.0.1:{broker.port}/nobody"
    monkeypatch.setenv(protocol.TOKEN_FILE_ENV, str(token_file))
    # Dask retries this one (the endpoint may be registering again after a broker restart)
    # until its connect timeout; each try fails with the broker's reason.
    with pytest.raises(OSError, match="Timed out trying to connect"):
        asyncio.run(connect(address, timeout=1))
    connector = BrokerBackend().get_connector()
    with pytest.raises(OSError, match="refused connect: no endpoint 'nobody' is registered"):
        asyncio.run(connector.connect(address.removeprefix("broker://")))
    wrong = tmp_path / "wrong-token"
    wrong.write_text("a-wrong-token-0123456789")
    monkeypatch.setenv(protocol.TOKEN_FILE_ENV, str(wrong))
    started = time.monotonic()
    with pytest.raises(OSError, match="authentication failed"):
        asyncio.run(connect(address, timeout=20))
    assert time.monotonic() - started < 15, "a refused token must not be retried"
    monkeypatch.delenv(protocol.TOKEN_FILE_ENV)
    monkeypatch.delenv(protocol.TOKEN_ENV, raising=False)
    with pytest.raises(OSError, match="no broker token"):
        asyncio.run(connect(address, timeout=20))


def test_an_impostor_broker_is_noticed(token_file, monkeypatch):
    """A server that answers 'ok' without knowing the token is not our broker."""
    from distributed.comm import connect

    async def impostor(reader, writer):
        writer.write(protocol.encode({"broker": "swift-rules", "version": 1, "nonce": "n"}))
        await reader.readline()
        writer.write(protocol.encode({"ok": True, "mac": "0" * 64}))
        await writer.drain()

    async def main():
        server = await asyncio.start_server(impostor, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await connect(f"broker://127.0.0.1:{port}/sched", timeout=20)

    monkeypatch.setenv(protocol.TOKEN_FILE_ENV, str(token_file))
    with pytest.raises(OSError, match="did not prove it knows the broker token"):
        asyncio.run(main())


def test_broker_needs_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv(protocol.TOKEN_ENV, raising=False)
    monkeypatch.delenv(protocol.TOKEN_FILE_ENV, raising=False)
    short = tmp_path / "short"
    short.write_text("abc")
    short.chmod(0o600)
    result = subprocess.run(
        [PY, "-m", "swift_rules", "broker", "serve", "--token-file", str(short)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "too short" in result.stderr


def _serve(token_file: Path, *args: str) -> subprocess.CompletedProcess:
    """`swift-rules broker serve` that is expected to refuse to start."""
    cmd = [PY, "-m", "swift_rules", "broker", "serve", "--port", "0", "--token-file",
           str(token_file), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env())


def test_the_broker_refuses_a_token_file_others_can_read(shared_tmp, attacker):
    """A token file that another user can read (the old recipe made it 0644), or that
    another user owns: the broker refuses to start, naming the file and what to do."""
    token = shared_tmp / "broker.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    stolen = attacker.run("cat", str(token))
    assert stolen.stdout.strip() == TOKEN  # what such a file gives away
    refused = _serve(token)
    assert refused.returncode == 2, refused.stderr
    assert f"the broker token file {token} is open to other users (mode 644)" in refused.stderr
    assert f"chmod 600 {token}" in refused.stderr and "Traceback" not in refused.stderr
    token.chmod(0o600)
    os.chown(token, attacker.uid, attacker.gid)
    refused = _serve(token)
    assert refused.returncode == 2, refused.stderr
    assert f"{token} belongs to uid {attacker.uid}, not to you" in refused.stderr


def test_the_documented_token_recipe_makes_a_private_file(tmp_path):
    recipe = next(
        line.split("#")[0].strip()
        for line in (REPO_ROOT / "docs" / "broker.md").read_text().splitlines()
        if "> broker.token" in line
    )
    subprocess.run(["sh", "-c", f"umask 022; {recipe}"], cwd=tmp_path, check=True)
    token = tmp_path / "broker.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600, recipe
    assert len(token.read_text().strip()) >= 32
    protocol.check_private(token)


def test_a_run_token_opens_its_run_only_until_it_expires(broker, token_file, monkeypatch):
    """What a DIRAC sandbox carries: a run token. It registers and reaches the endpoints
    of its run only, and is refused once expired; a forged one is refused. Dask's comm
    uses it as it is: the ids it makes up are the run's."""
    from swift_rules.backends.broker_comm import BrokerListener

    port, key = broker.port, TOKEN.encode()
    run = protocol.credential(protocol.run_token(key, "run-1", 600).encode())
    assert TOKEN not in protocol.run_token(key, "run-1", 600)

    def signed(op: dict, cred=run):
        return _signed({**op, **cred.claims()}, cred.key)

    # Another run's endpoint, registered with the long-lived token, and held.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as holder:
        f = holder.makefile("rwb")
        f.write(_signed({"op": "register", "id": "run-2.sched"})(json.loads(f.readline())["nonce"]))
        f.flush()
        assert json.loads(f.readline())["ok"] is True
        assert _raw(port, signed({"op": "register", "id": "run-1.sched"}))["ok"] is True
        others = ({"op": "register", "id": "run-2.w"}, {"op": "connect", "target": "run-2.sched"})
        for op in others:
            reply = _raw(port, signed(op))
            assert reply["ok"] is False, reply
            assert "a token of run 'run-1' is for ids run-1.* only" in reply["error"]
        f.close()
    expired = protocol.credential(protocol.run_token(key, "run-1", -1).encode())
    reply = _raw(port, signed({"op": "register", "id": "run-1.late"}, expired))
    assert reply["ok"] is False and "the run token of run 'run-1' expired at" in reply["error"]
    forged = protocol.credential(protocol.run_token(b"not-the-broker-token", "run-1", 600).encode())
    reply = _raw(port, signed({"op": "register", "id": "run-1.x"}, forged))
    assert reply["ok"] is False and "authentication failed" in reply["error"]
    monkeypatch.setenv(protocol.TOKEN_ENV, protocol.run_token(key, "run-1", 600))

    async def listen():
        listener = BrokerListener(f"127.0.0.1:{port}", lambda comm: None, True)
        await listener.start()
        listener.stop()
        return listener.id

    assert asyncio.run(listen()).startswith("run-1.")


def _idle(port: int, source: str, n: int) -> list[socket.socket]:
    """``n`` connections from ``source`` (a loopback address) that never send a request."""
    return [
        socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        for _ in range(n)
    ]


def _first_line(sock: socket.socket) -> dict:
    with sock.makefile("rb") as f:
        return json.loads(f.readline())


def test_idle_connections_cannot_take_the_slots_of_real_endpoints(
    procs, tmp_path, token_file, monkeypatch
):
    """Sockets that never authenticate count toward their own, smaller limits (in all,
    and per source address), not toward the connection limit, and are dropped after
    the handshake timeout; a real registration gets in at once meanwhile."""
    broker = start_broker(procs, tmp_path, token_file, extra=[
        "--max-connections", "20", "--max-handshakes", "8", "--max-handshakes-per-source", "4",
        "--handshake-timeout", "3"])  # fmt: skip
    port, held = broker.port, []
    try:
        flood = _idle(port, "127.0.0.2", 30)  # more than the connection limit, from one host
        held += flood
        replies = [_first_line(sock) for sock in flood]
        assert sum("nonce" in r for r in replies) == 4, replies  # waiting for a request
        busy = [r["error"] for r in replies if r.get("ok") is False]
        assert len(busy) == 26 and all("from 127.0.0.2 (limit 4)" in why for why in busy), busy
        started = time.monotonic()
        assert _raw(port, _signed({"op": "register", "id": "sched"}))["ok"] is True
        assert time.monotonic() - started < 2
        for source in ("127.0.0.3", "127.0.0.4"):
            held += _idle(port, source, 4)
        reply = _first_line(_idle(port, "127.0.0.5", 1)[0])
        assert "busy: too many connections in the handshake (limit 8)" in reply["error"], reply
        # Dask's comm, turned away as busy, tries again: it gets in once the idle ones
        # are dropped, and hears the broker's real answer.
        monkeypatch.setenv(protocol.TOKEN_FILE_ENV, str(token_file))
        connector = BrokerBackend().get_connector()
        with pytest.raises(OSError, match="no endpoint 'nobody' is registered"):
            asyncio.run(connector.connect(f"127.0.0.1:{port}/nobody"))
        assert "no request within 3 s" in broker.text()
    finally:
        for sock in held:
            sock.close()


def test_batch_backends_start_dask_through_the_broker(broker, token_file, monkeypatch):
    """executor.broker: the HTCondor cluster's scheduler listens on the broker and its
    worker jobs register there; the Kubernetes worker pods are told the same."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import HTCondorCluster

    from swift_rules.backends import htcondor, kubernetes
    from swift_rules.backends.broker import export_token

    via = f"127.0.0.1:{broker.port}"
    cfg = {"broker": {"address": via, "token_file": str(token_file)}}
    monkeypatch.setenv(protocol.TOKEN_FILE_ENV, "restored-after-the-test")
    export_token(cfg)
    kwargs = htcondor.cluster_kwargs(cfg)
    assert kwargs["scheduler_options"]["dashboard_address"] == "127.0.0.1:0"  # not for all
    with HTCondorCluster(**kwargs) as cluster:
        assert cluster.scheduler_address.startswith(f"broker://{via}/")
        script = cluster.job_script()
    assert f"--host {via}" in script, script
    assert f"DASK_BROKER_TOKEN_FILE={token_file}" in script, script
    spec = kubernetes.cluster_spec(cfg, 1, name="broker-test")
    container = spec["spec"]["worker"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--host") + 1] == via, args
    assert {"name": protocol.TOKEN_FILE_ENV, "value": str(token_file)} in container["env"]
    with pytest.raises(Exception, match="is not HOST:PORT"):
        htcondor.cluster_kwargs({"broker": {"address": "broker.example.org"}})


@pytest.mark.slow
def test_tls_to_the_broker(procs, tmp_path, token_file, monkeypatch):
    """With Dask's TLS settings, every connection to the broker is TLS (both ways
    authenticated: the broker checks the endpoints' certificates against --tls-ca)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    from distributed import Client
    from distributed.security import Security

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=swift-rules-test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_args = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(cert)]
    broker = start_broker(procs, tmp_path, token_file, extra=tls_args)
    via = f"127.0.0.1:{broker.port}"
    tls = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(cert)}
    for role in ("scheduler", "worker", "client"):
        tls[f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__CERT"] = str(cert)
        tls[f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__KEY"] = str(key)
    for name, value in tls.items():  # the children's environment (_env)
        monkeypatch.setenv(name, value)
    sched = start_scheduler(procs, tmp_path, token_file, via, protocol_="broker")
    start_worker(procs, tmp_path, token_file, sched, via, "w1")
    security = Security(tls_ca_file=str(cert), tls_client_cert=str(cert), tls_client_key=str(key))
    monkeypatch.setenv(protocol.TOKEN_FILE_ENV, str(token_file))
    with Client(sched, security=security, timeout=30) as client:
        client.wait_for_workers(1, timeout=60)
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    # A peer without TLS gets no answer: the broker drops it at the TLS handshake.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(b'{"op": "register", "id": "plain"}\n')
        try:
            reply = sock.recv(100)
        except ConnectionResetError:
            reply = b""
    assert reply == b"", reply


@pytest.mark.slow
def test_stage_job_through_a_broker(procs, tmp_path, token_file, tiny_dataset):
    """`swift-rules run` with executor type address and a broker:// scheduler: the token
    comes from executor.broker.token_file; the result is bit-identical to a local Dask
    run's with the same chunking."""

    broker = start_broker(procs, tmp_path, token_file)
    via = f"127.0.0.1:{broker.port}"
    sched = start_scheduler(procs, tmp_path, token_file, via, protocol_="broker")
    for name in ("w1", "w2"):
        start_worker(procs, tmp_path, token_file, sched, via, name)
    executor = {"type": "address", "address": sched, "broker": {"token_file": str(token_file)}}
    outputs = {}
    for label, ex in (("broker", executor), ("local", {"type": "local"})):
        out = tmp_path / f"{label}.pkl"
        cmd = [PY, "-m", "swift_rules", "run", "agc::ttbar", "--sample", "ttbar__nominal",
               "--files", *tiny_dataset["ttbar__nominal"], "--out", str(out), "--workers", "2",
               "--no-progress", "--settings", json.dumps({"chunksize": 500}),
               "--executor", json.dumps(ex)]  # fmt: skip
        env = _env()  # no token in the environment: executor.broker.token_file gives it
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs[label] = load_result(out)
        if label == "broker":  # (how a job ran is in its log, not in its result)
            assert "Dask scheduler: broker://" in proc.stderr, proc.stderr[-2000:]
    (a, meta_a), (b, meta_b) = outputs["broker"], outputs["local"]
    assert meta_a["events"] == meta_b["events"] and sum(meta_a["events"].values()) > 0
    assert _numbers(a).keys() == _numbers(b).keys()
    different = [k for k, v in _numbers(a).items() if not np.array_equal(v, _numbers(b)[k])]
    assert not different, f"not bit-identical to a local Dask run: {different[:5]}"


def _numbers(obj, prefix="") -> dict:
    """Every number of a stage output: histogram values and variances, counts."""
    import hist

    if isinstance(obj, dict):
        return {
            k: v for key, item in obj.items() for k, v in _numbers(item, f"{prefix}/{key}").items()
        }
    if isinstance(obj, hist.Hist):
        return {prefix: obj.values(flow=True), f"{prefix}:var": obj.variances(flow=True)}
    return {prefix: np.asarray(obj)}


POOL_ENV = Path("/var/cache/swift-rules/pool.env")


@pytest.mark.slow
def test_htcondor_dask_workers_through_the_broker(procs, tmp_path, request):
    """executor type htcondor with executor.broker on the personal HTCondor pool: the
    stage job's scheduler listens on the broker, the worker jobs register there, and
    the result is bit-identical to a local Dask run. (The pool is not firewalled.)"""

    if not POOL_ENV.exists():
        pytest.skip(f"no personal HTCondor pool ({POOL_ENV}): .ci/htcondor/setup.sh starts one")
    pool = dict(line.split("=", 1) for line in POOL_ENV.read_text().split() if "=" in line)
    work = Path(tempfile.mkdtemp(prefix="broker-", dir=pool["SWIFT_HTCONDOR_SCRATCH"]))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    work.chmod(0o777)
    token = work / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)  # for the pool's job user (another uid), whose jobs read it
    broker_token = tmp_path / "broker.token"  # the broker's own copy: ours alone
    broker_token.write_text(TOKEN)
    broker_token.chmod(0o600)
    data = work / "ttbar.root"
    subprocess.run(
        [
            PY,
            "-m",
            "swift_rules",
            "generate",
            "agc::nanoaod",
            "--dataset",
            "ttbar__nominal",
            "--events",
            "3000",
            "--out",
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    broker = start_broker(procs, tmp_path, token_file=broker_token)
    executor = {
        "type": "htcondor",
        "maximum_workers": 2,
        "worker_timeout": 120,
        "htcondor": {"memory": "1GB", "disk": "200MB"},
        "broker": {"address": f"127.0.0.1:{broker.port}", "token_file": str(token)},
    }
    outputs = {}
    for label, ex in (("htcondor", executor), ("local", {"type": "local"})):
        out = work / f"{label}.pkl"
        cmd = [
            "swift-rules",
            "run",
            "agc::ttbar",
            "--sample",
            "ttbar__nominal",
            "--files",
            str(data),
            "--out",
            str(out),
            "--workers",
            "2",
            "--no-progress",
            "--settings",
            json.dumps({"chunksize": 500}),
            "--executor",
            json.dumps(ex),
        ]
        if label == "htcondor":  # in the pool's root, as its job user
            cmd = [str(Path(__file__).parents[1] / ".ci/htcondor/pool.sh"), "run", *cmd]
        else:
            cmd = [PY, "-m", "swift_rules", *cmd[1:]]
        proc = subprocess.run(
            cmd, cwd=work, capture_output=True, text=True, timeout=300, env=_env()
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        outputs[label] = load_result(out)
        if label == "htcondor":
            assert f"HTCondor Dask cluster: broker://127.0.0.1:{broker.port}/" in proc.stderr
    # The scheduler, and each worker job's nanny and worker, registered at the broker.
    assert broker.text().count("registered from") >= 3, broker.text()
    (a, _), (b, _) = outputs["htcondor"], outputs["local"]
    different = [k for k, v in _numbers(a).items() if not np.array_equal(v, _numbers(b)[k])]
    assert _numbers(a).keys() == _numbers(b).keys() and not different, different[:5]

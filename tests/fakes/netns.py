"""Another machine on the network, for the tests: a Linux network namespace joined to
this one by a veth pair. From inside it, this machine is ``host_ip``, a non-loopback
address, as any other host on the network sees it. Needs root and ``ip``."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


class Namespace:
    """Named ``NAME<tag>``, joined by the veth pair ``VETH<tag>a``/``b``, on the network
    10.SUBNET.x.0/24 (distinct names and networks for namespaces alive at once)."""

    def __init__(self, tag: int, name: str = "swsec", veth: str = "ssc", subnet: int = 233):
        self.name = f"{name}{tag}"
        self.veth = (f"{veth}{tag}a", f"{veth}{tag}b")
        octet = 1 + tag % 250
        self.host_ip, self.ns_ip = f"10.{subnet}.{octet}.1", f"10.{subnet}.{octet}.2"
        self.prefix = ["ip", "netns", "exec", self.name]

    def _ip(self, *args: str, inside: bool = False) -> None:
        cmd = [*(self.prefix if inside else ()), "ip", *args]
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def up(self) -> Namespace:
        a, b = self.veth
        self._ip("netns", "add", self.name)
        self._ip("link", "add", a, "type", "veth", "peer", "name", b)
        self._ip("link", "set", b, "netns", self.name)
        self._ip("addr", "add", f"{self.host_ip}/24", "dev", a)
        self._ip("link", "set", a, "up")
        self._ip("addr", "add", f"{self.ns_ip}/24", "dev", b, inside=True)
        self._ip("link", "set", b, "up", inside=True)
        self._ip("link", "set", "lo", "up", inside=True)
        return self

    def down(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth[0]], capture_output=True)

    def run(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        return subprocess.run([*self.prefix, *cmd], **kw)


def brought_up(ns: Namespace, needs: tuple[str, ...] = ("ip",)):
    """``ns``, created afresh (a namespace left by a killed run is removed first); the
    test skips where namespaces cannot be made (they need root and ``needs``)."""
    missing = [tool for tool in needs if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"a network namespace needs root and {', '.join(needs)} "
                    f"(missing: {missing or 'root'})")  # fmt: skip
    ns.down()
    try:
        ns.up()
    except subprocess.CalledProcessError as err:
        ns.down()
        pytest.skip(f"cannot create a network namespace here: {err.stderr.strip()}")
    return ns


@pytest.fixture(scope="module")
def other_host():
    """A namespace standing in for another machine on the network."""
    ns = brought_up(Namespace(os.getpid() % 100_000))
    yield ns
    ns.down()

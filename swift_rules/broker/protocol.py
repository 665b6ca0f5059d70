"""The broker's wire protocol: one JSON line each way, authenticated with a shared token.

Every connection to the broker starts the same way::

    broker -> peer   {"broker": "swift-rules", "version": 1, "nonce": N}
    peer -> broker   {"op": ..., ..., "cnonce": C, "mac": HMAC(token, "peer", N, request)}
    broker -> peer   {"ok": true, "mac": HMAC(token, "broker", C, N)}
                     or {"ok": false, "error": ...}

The token never crosses the wire: each side proves it knows the token by a MAC over
the other side's fresh nonce (HMAC-SHA256), so a peer without the token is refused and a
peer talking to a broker without the token (an impostor) notices. After an ``ok`` the
connection carries raw bytes: the relayed Dask comm, or the broker's ``open`` requests
on an endpoint's control connection.

Run tokens: where a token must travel with the jobs (a DIRAC sandbox stays on the grid's
storage), the stage job gives them a *run token* instead of the long-lived one:
``run_token(token, run, lifetime)`` holds the run's name, an expiry and the key
HMAC(token, run, expiry), which only the holder of the long-lived token can make. A
peer using it adds ``"run"`` and ``"expires"`` to its request and MACs with that key;
the broker derives the same key, refuses it once expired, and lets it register and
reach only the endpoints of its run (ids ``RUN.*``). A leaked sandbox then opens that
one run's endpoints until the expiry, not the broker.

Operations:

- ``register`` ``{"id": ID}``: the connection becomes ID's control connection; the
  broker writes ``{"op": "open", "ticket": T}`` lines on it when someone connects to ID.
- ``connect`` ``{"target": ID}``: a connection to endpoint ID, relayed once ID answers.
- ``data`` ``{"id": ID, "ticket": T}``: ID's answer to the ``open`` request T.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = 1
# Handshake and control lines are small; anything longer is refused (not buffered).
MAX_LINE = 4096
# Endpoint ids: what may follow broker://HOST:PORT/ in an address.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_PORT = 8785
TOKEN_ENV = "DASK_BROKER_TOKEN"
TOKEN_FILE_ENV = "DASK_BROKER_TOKEN_FILE"
RUN_TOKEN_PREFIX = "swift-rules-run-token"
# A run's name: the first part of its endpoints' ids (no '.', which ends it).
RUN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ProtocolError(ValueError):
    """A line that is not a valid message of this protocol."""


def encode(msg: dict) -> bytes:
    return json.dumps(msg, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line of {len(line)} bytes (limit {MAX_LINE})")
    try:
        msg = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"not a JSON line: {err}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("not a JSON object")
    return msg


def nonce() -> str:
    return secrets.token_hex(16)


def _mac(token: bytes, *parts: str) -> str:
    return hmac.new(token, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


def request_mac(token: bytes, broker_nonce: str, request: dict) -> str:
    """The peer's proof: a MAC over the broker's nonce and the whole request."""
    body = {k: v for k, v in request.items() if k != "mac"}
    return _mac(token, "peer", broker_nonce, json.dumps(body, sort_keys=True))


def reply_mac(token: bytes, peer_nonce: str, broker_nonce: str) -> str:
    """The broker's proof: a MAC over the peer's nonce."""
    return _mac(token, "broker", peer_nonce, broker_nonce)


def same(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Credential:
    """How a peer authenticates: the MAC key, and for a run token its run and expiry."""

    key: bytes
    run: str | None = None
    expires: int | None = None

    def claims(self) -> dict:
        return {} if self.run is None else {"run": self.run, "expires": self.expires}


def run_key(token: bytes, run: str, expires: int) -> bytes:
    """The MAC key of a run token: made from the long-lived token, by its holders only."""
    return _mac(token, "run", run, str(expires)).encode()


def run_token(token: bytes, run: str, lifetime_s: float) -> str:
    """A token for run ``run``'s endpoints only, valid ``lifetime_s`` seconds from now."""
    if not RUN_PATTERN.match(run):
        raise ValueError(f"bad run name {run!r} (letters, digits, '_-', up to 64)")
    expires = int(time.time() + lifetime_s)
    return f"{RUN_TOKEN_PREFIX}:{run}:{expires}:{run_key(token, run, expires).decode()}"


def credential(token: bytes) -> Credential:
    """What ``read_token`` gave, as the handshake uses it: a run token, or the token."""
    if not token.startswith(RUN_TOKEN_PREFIX.encode() + b":"):
        return Credential(token)
    parts = token.decode(errors="replace").split(":")
    if len(parts) != 4 or not RUN_PATTERN.match(parts[1]) or not parts[2].isdigit():
        raise ValueError("a malformed run token (want PREFIX:RUN:EXPIRES:KEY)")
    return Credential(parts[3].encode(), parts[1], int(parts[2]))


def check_private(path: str | os.PathLike) -> None:
    """Refuse a token file that others may read or change, as ssh refuses such keys."""
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        raise ValueError(
            f"the broker token file {path} belongs to uid {st.st_uid}, not to you "
            f"(uid {os.geteuid()}): whoever owns it knows the token and can change it"
        )
    if st.st_mode & 0o077:
        raise ValueError(
            f"the broker token file {path} is open to other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}): chmod 600 {path}, and make a new token if "
            "anyone may have read it"
        )


def read_token(path: str | os.PathLike | None = None, private: bool = False) -> bytes:
    """The shared token: from the file ``path``; else $DASK_BROKER_TOKEN or Dask's config
    ``distributed.comm.broker.token``; else the file named by $DASK_BROKER_TOKEN_FILE or
    ``distributed.comm.broker.token-file``. No token is an error: the broker is never an
    open relay. ``private``: a token file must be the user's, mode 600 (the broker's)."""
    if path is None:
        import dask.config

        for source, value in (
            (f"${TOKEN_ENV}", os.environ.get(TOKEN_ENV)),
            ("Dask config distributed.comm.broker.token",
             dask.config.get("distributed.comm.broker.token", None)),
        ):  # fmt: skip
            if value:
                return _checked(str(value).strip().encode(), source)
        path = os.environ.get(TOKEN_FILE_ENV) or dask.config.get(
            "distributed.comm.broker.token-file", None
        )
    if path is None:
        raise ValueError(
            f"no broker token: set ${TOKEN_ENV}, or ${TOKEN_FILE_ENV} to a file holding it "
            "(or Dask config distributed.comm.broker.token / token-file)"
        )
    try:
        if private:
            check_private(path)
        token = Path(path).read_text().strip().encode()
    except OSError as err:
        raise ValueError(f"cannot read the broker token file {path}: {err}") from None
    return _checked(token, f"the file {path}")


def _checked(token: bytes, source: str) -> bytes:
    if len(token) < 16:
        raise ValueError(f"broker token from {source} is too short (need 16 characters or more)")
    return token

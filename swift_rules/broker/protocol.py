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
from pathlib import Path

VERSION = 1
# Handshake and control lines are small; anything longer is refused (not buffered).
MAX_LINE = 4096
# Endpoint ids: what may follow broker://HOST:PORT/ in an address.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_PORT = 8785
TOKEN_ENV = "DASK_BROKER_TOKEN"
TOKEN_FILE_ENV = "DASK_BROKER_TOKEN_FILE"


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


def read_token(path: str | os.PathLike | None = None) -> bytes:
    """The shared token: from the file ``path``; else $DASK_BROKER_TOKEN or Dask's config
    ``distributed.comm.broker.token``; else the file named by $DASK_BROKER_TOKEN_FILE or
    ``distributed.comm.broker.token-file``. No token is an error: the broker is never an
    open relay."""
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
        token = Path(path).read_text().strip().encode()
    except OSError as err:
        raise ValueError(f"cannot read the broker token file {path}: {err}") from None
    return _checked(token, f"the file {path}")


def _checked(token: bytes, source: str) -> bytes:
    if len(token) < 16:
        raise ValueError(f"broker token from {source} is too short (need 16 characters or more)")
    return token

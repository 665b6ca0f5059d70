"""``swift-rules broker serve``: run the connection broker in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import ssl
import sys

from swift_rules.broker.protocol import DEFAULT_PORT


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=["serve"], help="serve: run the broker until stopped")
    sp.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    sp.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    sp.add_argument(
        "--token-file",
        help="file holding the shared token (default: $DASK_BROKER_TOKEN, "
        "$DASK_BROKER_TOKEN_FILE or Dask config distributed.comm.broker.token)",
    )
    sp.add_argument("--tls-cert", help="PEM certificate: endpoints then connect with TLS")
    sp.add_argument("--tls-key", help="PEM key of --tls-cert (default: in the cert file)")
    sp.add_argument("--tls-ca", help="CA file: also require client certificates signed by it")
    sp.add_argument("--max-connections", type=int, default=100_000)
    sp.add_argument(
        "--max-handshakes",
        type=int,
        default=1024,
        help="connections not yet authenticated, in all (default 1024): more wait",
    )
    sp.add_argument(
        "--max-handshakes-per-source",
        type=int,
        default=128,
        help="connections not yet authenticated from one address (default 128)",
    )
    sp.add_argument(
        "--handshake-timeout",
        type=float,
        default=5.0,
        help="seconds a new connection has to authenticate (default 5)",
    )
    sp.add_argument(
        "--no-splice",
        action="store_true",
        help="relay through Python (asyncio) instead of splice(2) in the kernel",
    )
    sp.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])


def _tls(args) -> ssl.SSLContext | None:
    if not args.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_ca:
        ctx.load_verify_locations(args.tls_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _raise_fd_limit() -> None:
    """One file descriptor per registered endpoint and two per relayed comm: the usual
    soft limit (1024) would cap the broker at a few hundred workers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    logging.getLogger("swift_rules.broker").info("file descriptor limit: %d", soft)


def serve(args) -> int:
    from swift_rules.broker import protocol
    from swift_rules.broker.server import Broker, serve
    from swift_rules.errors import SwiftError

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    # The command line prints swift_rules' own loggers at INFO (cli.log_to_stderr): the
    # broker's --log-level is theirs too (DEBUG: every relay).
    logging.getLogger("swift_rules").setLevel(args.log_level)
    try:
        # A token file must be the user's, mode 600 (as ssh wants of keys): whoever can
        # read it can use every cluster behind this broker.
        token = protocol.read_token(args.token_file, private=True)
        ctx = _tls(args)
    except (ValueError, OSError) as err:
        raise SwiftError(f"broker: {err}") from None
    _raise_fd_limit()
    broker = Broker(
        token,
        args.host,
        args.port,
        ssl_context=ctx,
        max_connections=args.max_connections,
        use_splice=not args.no_splice,
        handshake_timeout=args.handshake_timeout,
        max_handshakes=args.max_handshakes,
        max_handshakes_per_source=args.max_handshakes_per_source,
    )

    def ready(b):
        print(f"[swift-rules] broker listening on {b.host}:{b.port}", file=sys.stderr, flush=True)

    try:
        asyncio.run(serve(broker, ready))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        raise SwiftError(f"broker: cannot listen on {args.host}:{args.port}: {err}") from None
    return 0

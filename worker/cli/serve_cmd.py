"""`dunning serve`: receive Lago webhooks and expose /metrics and /healthz; with
`DUNNING_CONSOLE_PASSWORD_HASH` set, the ops console under /console as well.

Point a Lago webhook endpoint at `http://HOST:PORT/webhooks/lago`. JWT-signed webhooks are
checked with the key from Lago (`GET /api/v1/webhooks/json_public_key`, cached); HMAC-signed
ones need `DUNNING_WEBHOOK_HMAC_KEY` (Lago's "HMAC Signature Token", not the API key).
"""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer

from worker.cli.common import cli_runtime, cli_settings
from worker.cli.errors import EXIT_USAGE, fail


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8080,
) -> None:
    """Serve Lago webhooks (POST /webhooks/lago), Prometheus /metrics, /healthz and the ops
    console (/console)."""
    import uvicorn

    from worker.logging import get_logger
    from worker.web.app import WEBHOOK_PATH, create_app
    from worker.web.console.passwords import PasswordHashError

    if not 0 < port < 65536:
        fail(f"invalid --port {port}: use 1-65535", exit_code=EXIT_USAGE)
    settings = cli_settings()
    rt = cli_runtime(settings)
    log = get_logger(__name__)
    try:
        try:
            app = create_app(rt)
        except PasswordHashError as exc:
            fail(f"invalid DUNNING_CONSOLE_PASSWORD_HASH: {exc}", exit_code=EXIT_USAGE)
        # Bound here, not by uvicorn: a busy port is then one line (uvicorn logs its own error
        # and exits 3).
        listening = listen(host, port)
        log.info(
            "serving",
            url=f"http://{host}:{port}{WEBHOOK_PATH}",
            hmac_key_set=settings.webhook_hmac_key is not None,
            console=f"http://{host}:{port}/console/" if settings.console_enabled else "off",
        )
        config = uvicorn.Config(app, log_config=None, access_log=False)
        try:
            uvicorn.Server(config).run(sockets=[listening])
        finally:
            listening.close()
    finally:
        rt.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or one line: exit 2 for a host that does not
    resolve, exit 1 when the address cannot be taken (busy, not ours, no permission)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        fail(f"invalid --host {host!r}: {reason}", exit_code=EXIT_USAGE)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {_bind_problem(exc)}")
    sock.set_inheritable(True)
    return sock


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            "the address is already in use (another process listens there: stop it or "
            "choose another --port)"
        )
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges: choose another --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address (use 127.0.0.1 or 0.0.0.0)"
    return exc.strerror or type(exc).__name__


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

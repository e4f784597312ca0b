"""Running the sandbox: in a background thread for tests, or blocking for the CLI."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from sandbox.app import build_app
from sandbox.state import DEFAULT_API_KEY, SandboxOptions, SandboxState


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    url: str
    state: SandboxState

    @property
    def api_key(self) -> str:
        return self.state.options.api_key


def _uvicorn_config(state: SandboxState, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(state),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )


def _tcp_socket(host: str) -> socket.socket:
    """A listening socket created with an explicit IPPROTO_TCP: asyncio only turns on
    TCP_NODELAY for such sockets, and without it keep-alive requests wait ~40 ms on
    delayed ACKs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


@contextlib.contextmanager
def running_sandbox(
    options: SandboxOptions | None = None,
    *,
    host: str = "127.0.0.1",
    log_level: str = "warning",
    start_timeout: float = 30.0,
) -> Iterator[RunningSandbox]:
    """Serve the sandbox on a free port of `host` in a daemon thread; yields its base URL."""
    state = SandboxState(options or SandboxOptions())
    sock = _tcp_socket(host)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    state.public_url = url
    server = uvicorn.Server(_uvicorn_config(state, log_level))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the sandbox server did not start")
        time.sleep(0.01)
    try:
        yield RunningSandbox(url=url, state=state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        state.webhooks.close()
        sock.close()


class ServeError(RuntimeError):
    """The sandbox cannot start; the message is one line."""


def serve(options: SandboxOptions, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted (used by `python -m sandbox` and `dunning sandbox`)."""
    state = SandboxState(options)
    sock = _tcp_socket(host)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    url = f"http://{host}:{sock.getsockname()[1]}"
    state.public_url = url
    store = state.store
    key_hint = (
        f"API key: {options.api_key}"
        if options.api_key == DEFAULT_API_KEY
        else "API key: the one given with --api-key"
    )
    print(
        f"Lago sandbox on {url} ({key_hint}; {len(store.customers)} customers, "
        f"{len(store.invoices)} invoices; control plane at {url}/_sandbox/)",
        flush=True,
    )
    try:
        uvicorn.Server(_uvicorn_config(state, "warning")).run(sockets=[sock])
    finally:
        state.webhooks.close()
        sock.close()

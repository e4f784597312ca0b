"""Logging for every process: readable on a terminal, one JSON object per line elsewhere.

`configure_logging(settings)` is called once at each entry point (CLI, Celery signal, web
server: uvicorn and Celery log through the root logger it sets up). Logs go to stderr so
`--json` command output on stdout stays machine-readable.

What a log line can never show, in any format:
- frame locals: tracebacks are plain text (file, line, code, exception), never the rich
  "locals" panels, whose variables held database URLs and customers' emails;
- a credential field (`api_key`, `password`, `token`...): its value is replaced by `***`;
- an email address: `jane.doe@example.com` becomes `j***@example.com`, in exception text too;
- a secret value of the settings (API key, HMAC key, URL passwords of 6 characters or more),
  wherever it would appear in the rendered line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import quote


def _import_structlog_without_rich_tracebacks() -> None:
    """Import structlog with rich's console, traceback and pretty modules out of its reach.

    On import, structlog prepares rich tracebacks (with their "locals" panels) whenever rich is
    installed: rich's console, traceback, pretty-printer and syntax highlighter, pygments'
    lexer table, attrs; about 25-40 ms of every command's start. This module never renders
    them (tracebacks are plain text, see above), so while structlog is imported those modules
    read as absent and structlog keeps its plain formatter; afterwards they import normally
    for anyone else (the CLI's consoles import rich on first use)."""
    hidden = [
        name
        for name in ("rich.console", "rich.traceback", "rich.pretty")
        if name not in sys.modules
    ]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # None: "not importable"
    try:
        import structlog  # noqa: F401  (cached in sys.modules for the import below)
    finally:
        for name in hidden:
            del sys.modules[name]


_import_structlog_without_rich_tracebacks()

import structlog  # noqa: E402

from config import LogFormat, Settings  # noqa: E402

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_SECRET_KEYS = ("api_key", "apikey", "authorization", "password", "secret", "token", "hmac")
#: Shorter secrets are not searched for in rendered text (they would blank common words);
#: they are still never logged by our code, which logs URLs masked and keys not at all.
MIN_REDACTED_LENGTH = 6

Renderer = Callable[[Any, str, MutableMapping[str, Any]], str]


def mask_email(text: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`, anywhere in the text."""
    return _EMAIL.sub(r"\1***@\2", text)


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = mask_email(value)
    return event


def _spellings(secrets: Iterable[str]) -> list[str]:
    """Each secret as written, percent-encoded, and escaped the way JSON and repr() would
    show it; longest first, so a longer secret is never half-replaced by a shorter one."""
    found: set[str] = set()
    for secret in secrets:
        if len(secret) >= MIN_REDACTED_LENGTH:
            found.update((secret, quote(secret, safe=""), json.dumps(secret)[1:-1]))
            found.add(repr(secret)[1:-1])
    return sorted(found, key=len, reverse=True)


def redacting(renderer: Renderer, secrets: Iterable[str]) -> Renderer:
    """Wrap the final renderer: emails masked and secret values replaced in the whole line,
    exception text included."""
    spellings = _spellings(secrets)

    def render(logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        text = mask_email(renderer(logger, name, event))
        for secret in spellings:
            text = text.replace(secret, "***")
        return text

    return render


def wants_console(settings: Settings, stream: Any = None) -> bool:
    """Console rendering on a terminal (or when forced), JSON otherwise."""
    if settings.log_format is LogFormat.CONSOLE:
        return True
    if settings.log_format is LogFormat.JSON:
        return False
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def configure_logging(settings: Settings, *, force_json: bool = False) -> None:
    console = wants_console(settings) and not force_json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        if console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Every format: the traceback as plain text, before the secrets are scrubbed.
            structlog.processors.format_exc_info,
            redacting(renderer, settings.secret_values()),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger

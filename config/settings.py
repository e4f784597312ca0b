"""Typed settings, read once from the environment (and an optional `.env` file) and passed in.

Every variable is documented in README.md ("Configuration"). Nothing else in the project reads
`os.environ` for configuration: build a `Settings` with `load_settings()` at the edge (CLI,
Celery bootstrap, web server) and hand it down.
"""

from __future__ import annotations

import ipaddress
import math
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DEFAULT_SANDBOX_API_KEY = "sandbox-key"

#: Brokers the worker is built for (see worker/celery.py): Redis, or folders on one host.
BROKER_SCHEMES = ("redis", "rediss", "filesystem")
#: The shared outbound rate limit: 0 turns it off, otherwise within this range (requests/s).
RATE_LIMIT_RANGE = (0.1, 10_000.0)
_PERCENT_ENCODE_HINT = (
    "if the password contains / @ : # ? or %, percent-encode them "
    "(/ as %2F, @ as %40, : as %3A, # as %23, ? as %3F, % as %25)"
)


class LogFormat(StrEnum):
    AUTO = "auto"  # rich console on a terminal, JSON lines otherwise
    CONSOLE = "console"
    JSON = "json"


class SmtpSecurity(StrEnum):
    NONE = "none"  # plain SMTP (a relay on the same host or network)
    STARTTLS = "starttls"  # plain connect, then STARTTLS before anything else (port 587)
    TLS = "tls"  # TLS from the first byte (port 465)


class SettingsError(Exception):
    """A configuration value is invalid. `str()` is one line naming the variable and the fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    # Lago
    lago_api_url: str | None = Field(default=None, validation_alias="LAGO_API_URL")
    lago_api_key: SecretStr = Field(
        default=SecretStr(DEFAULT_SANDBOX_API_KEY), validation_alias="LAGO_API_KEY"
    )
    lago_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0, validation_alias="LAGO_TIMEOUT_S"
    )
    lago_max_retries: Annotated[int, Field(ge=0, le=20)] = Field(
        default=4, validation_alias="LAGO_MAX_RETRIES"
    )

    # Where state lives
    data_dir: Path = Field(default=Path("var"), validation_alias="DUNNING_DATA_DIR")
    # URLs may embed passwords: kept out of repr; log them with `mask_url()`.
    database_url: str | None = Field(
        default=None, validation_alias="DUNNING_DATABASE_URL", repr=False
    )
    broker_url: str | None = Field(default=None, validation_alias="DUNNING_BROKER_URL", repr=False)
    policy_file: Path = Field(
        default=Path("config/policies.yaml"), validation_alias="DUNNING_POLICY_FILE"
    )

    # Throughput and safety
    rate_limit_rps: Annotated[float, Field(ge=0)] = Field(
        default=40.0, validation_alias="DUNNING_RATE_LIMIT_RPS"
    )
    http_concurrency: Annotated[int, Field(ge=1, le=256)] = Field(
        default=16, validation_alias="DUNNING_HTTP_CONCURRENCY"
    )
    #: Processes an inline sweep sends from (itself and helpers forked from it); more than
    #: one only with the rate limiter off or shared through Redis (`worker.services.send_helpers`).
    send_processes: Annotated[int, Field(ge=1, le=16)] = Field(
        default=1, validation_alias="DUNNING_SEND_PROCESSES"
    )
    lease_seconds: Annotated[int, Field(ge=10, le=3600)] = Field(
        default=300, validation_alias="DUNNING_LEASE_SECONDS"
    )
    settle_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(
        default=120, validation_alias="DUNNING_SETTLE_SECONDS"
    )
    max_ambiguous_tries: Annotated[int, Field(ge=1, le=50)] = Field(
        default=5, validation_alias="DUNNING_MAX_AMBIGUOUS_TRIES"
    )

    # Webhook receiver (`dunning serve`)
    webhook_hmac_key: SecretStr | None = Field(
        default=None, validation_alias="DUNNING_WEBHOOK_HMAC_KEY"
    )
    webhook_max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=1_048_576, validation_alias="DUNNING_WEBHOOK_MAX_BODY_BYTES"
    )

    # Email (the retry_and_email channel). No host: messages are kept as .eml files in
    # `<data dir>/outbox/` instead of being sent.
    smtp_host: str | None = Field(default=None, validation_alias="DUNNING_SMTP_HOST")
    smtp_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, validation_alias="DUNNING_SMTP_PORT"
    )
    smtp_security: SmtpSecurity = Field(
        default=SmtpSecurity.STARTTLS, validation_alias="DUNNING_SMTP_SECURITY"
    )
    smtp_user: str | None = Field(default=None, validation_alias="DUNNING_SMTP_USER")
    smtp_password: SecretStr | None = Field(
        default=None, validation_alias="DUNNING_SMTP_PASSWORD", repr=False
    )
    #: The From header; its display name signs the email (`Acme Billing <ar@acme.example>`).
    smtp_from: str = Field(default="billing@localhost", validation_alias="DUNNING_SMTP_FROM")
    smtp_reply_to: str | None = Field(default=None, validation_alias="DUNNING_SMTP_REPLY_TO")
    #: Trust this CA (PEM) for the mail server's certificate, e.g. a private relay's.
    smtp_ca_file: Path | None = Field(default=None, validation_alias="DUNNING_SMTP_CA_FILE")
    smtp_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0, validation_alias="DUNNING_SMTP_TIMEOUT_S"
    )

    # Ops console (`dunning serve`, under /console): off unless a password hash is set.
    console_password_hash: SecretStr | None = Field(
        default=None, validation_alias="DUNNING_CONSOLE_PASSWORD_HASH"
    )
    # Signs the session cookies; without it a key is derived from the password hash.
    console_secret_key: SecretStr | None = Field(
        default=None, validation_alias="DUNNING_CONSOLE_SECRET_KEY"
    )
    # Secure cookies: None = when the request came over https.
    console_secure_cookie: bool | None = Field(
        default=None, validation_alias="DUNNING_CONSOLE_SECURE_COOKIE"
    )
    console_session_hours: Annotated[float, Field(gt=0, le=720)] = Field(
        default=12.0, validation_alias="DUNNING_CONSOLE_SESSION_HOURS"
    )

    # Prometheus metrics of Celery workers and beat (`dunning serve` has its own /metrics)
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, validation_alias="DUNNING_METRICS_PORT"
    )
    metrics_addr: str = Field(default="127.0.0.1", validation_alias="DUNNING_METRICS_ADDR")
    metrics_dir: Path | None = Field(default=None, validation_alias="DUNNING_METRICS_DIR")

    # Logging
    log_level: str = Field(default="INFO", validation_alias="DUNNING_LOG_LEVEL")
    log_format: LogFormat = Field(default=LogFormat.AUTO, validation_alias="DUNNING_LOG_FORMAT")

    @field_validator("lago_api_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError("must not contain spaces or control characters")
        parts = _split(value)
        if parts is None or not parts.hostname:
            raise ValueError("is not a valid URL; use e.g. https://api.getlago.com")
        return value

    @field_validator("lago_api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value().strip()
        problem = api_key_problem(key)
        if problem is not None:
            raise ValueError(problem)
        return SecretStr(key)

    @field_validator("webhook_hmac_key")
    @classmethod
    def _strip_hmac_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value().strip() == "":
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("console_password_hash", "console_secret_key")
    @classmethod
    def _strip_console_secret(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is None or value.get_secret_value().strip() == "":
            return None
        secret = value.get_secret_value().strip()
        if info.field_name == "console_password_hash" and not secret.startswith("scrypt$"):
            raise ValueError("is not a hash from `dunning console-password` (scrypt$...)")
        if info.field_name == "console_secret_key" and len(secret) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return SecretStr(secret)

    @field_validator("console_secure_cookie", mode="before")
    @classmethod
    def _blank_is_auto(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    @field_validator("rate_limit_rps")
    @classmethod
    def _check_rate(cls, value: float) -> float:
        low, high = RATE_LIMIT_RANGE
        if not math.isfinite(value) or not (value == 0 or low <= value <= high):
            raise ValueError(f"must be 0 (no limit) or between {low:g} and {high:g} requests/s")
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError(
                "must be an IP address to listen on, e.g. 127.0.0.1 (this host only) or 0.0.0.0"
            ) from None

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("smtp_host", "smtp_user", "smtp_reply_to", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("smtp_ca_file")
    @classmethod
    def _check_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file {value}: give the path of a PEM CA file")
        return value

    @property
    def resolved_smtp_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {SmtpSecurity.NONE: 25, SmtpSecurity.STARTTLS: 587, SmtpSecurity.TLS: 465}[
            self.smtp_security
        ]

    @property
    def outbox_dir(self) -> Path:
        """Where messages are kept as .eml files when no SMTP host is set."""
        return (self.data_dir / "outbox").resolve()

    @field_validator("database_url", "broker_url", "metrics_port", "metrics_dir", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("database_url", "broker_url")
    @classmethod
    def _check_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        check = database_url_problem if info.field_name == "database_url" else broker_url_problem
        problem = None if value is None else check(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    # Derived values: one place decides the embedded defaults.

    @property
    def uses_sandbox(self) -> bool:
        """No Lago URL configured: the local sandbox stands in for Lago."""
        return self.lago_api_url is None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dunning.sqlite3').resolve()}"

    @property
    def uses_embedded_database(self) -> bool:
        """The SQLite file in the data dir (no DUNNING_DATABASE_URL): its folder may be made."""
        return self.database_url is None

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Folders of the embedded `filesystem://` broker (all on one filesystem)."""
        return (self.data_dir / "broker").resolve()

    @property
    def console_enabled(self) -> bool:
        return self.console_password_hash is not None

    @property
    def resolved_metrics_dir(self) -> Path | None:
        """Where worker and beat processes keep their metric files (prometheus_client
        multiprocess mode), one folder per metrics port; None when no port is set."""
        if self.metrics_port is None:
            return None
        if self.metrics_dir is not None:
            return self.metrics_dir.resolve()
        return (self.data_dir / "metrics" / f"port-{self.metrics_port}").resolve()

    @property
    def broker_is_redis(self) -> bool:
        return self.resolved_broker_url.startswith(("redis://", "rediss://"))

    def secret_values(self) -> tuple[str, ...]:
        """Every secret these settings hold (API key, HMAC key, URL passwords), as written
        and as decoded: what log output must never contain."""
        found = [self.lago_api_key.get_secret_value()]
        for secret in (
            self.webhook_hmac_key,
            self.smtp_password,
            self.console_password_hash,
            self.console_secret_key,
        ):
            if secret is not None and secret.get_secret_value():
                found.append(secret.get_secret_value())
        database = _database_url(self.resolved_database_url)
        if database is not None and database.password:
            found.append(str(database.password))
        broker = _broker_parts(self.resolved_broker_url)
        if broker is not None and broker.password:
            found.extend((broker.password, unquote(broker.password)))
        return tuple(dict.fromkeys(found))


# -- secrets and URLs: checked here, once, so nothing later can choke on them or print them ---


def api_key_problem(key: str) -> str | None:
    """Why `key` cannot be sent as `Authorization: Bearer <key>`, or None. Never echoes it."""
    if not key:
        return "is empty; set it to your Lago API key (or unset it for the sandbox)"
    if not all("!" <= char <= "~" for char in key):
        return (
            "contains spaces, control characters (such as a line break) or non-ASCII "
            "characters; copy the key again exactly as Lago shows it"
        )
    return None


def _split(url: str) -> SplitResult | None:
    """`urlsplit` with its port checked, or None when the URL cannot be read (no echo)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return None
    return parts


def broker_url_problem(url: str) -> str | None:
    """Why the worker cannot use this broker URL, or None. Never echoes the URL."""
    schemes = ", ".join(f"{scheme}://" for scheme in BROKER_SCHEMES)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        return f"unsupported broker; use one of {schemes}"
    if scheme == "filesystem":
        return None if url.lower() == "filesystem://" else "use exactly filesystem://"
    parts = _broker_parts(url)
    if parts is None:
        return f"cannot be read as {scheme}://[:PASSWORD@]HOST[:PORT][/DB]; {_PERCENT_ENCODE_HINT}"
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        return f"the database after the host must be a number, as in {scheme}://HOST:6379/0"
    return None


def database_url_problem(url: str) -> str | None:
    """Why this is not a usable SQLite or PostgreSQL URL, or None. Never echoes the URL."""
    parsed = _database_url(url)
    if parsed is None:
        return (
            "is not a database URL (sqlite:///PATH or postgresql+psycopg://...); "
            + _PERCENT_ENCODE_HINT
        )
    backend = parsed.get_backend_name()
    if backend == "postgres":
        return "postgres:// is not a SQLAlchemy URL scheme: write postgresql+psycopg://..."
    # The driver name is asked only of known backends (for others SQLAlchemy would try to
    # load a dialect plugin).
    driver = parsed.get_driver_name() if backend in ("sqlite", "postgresql") else None
    if (backend, driver) not in {("sqlite", "pysqlite"), ("postgresql", "psycopg")}:
        return (
            "unsupported database; use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        )
    if parsed.host is not None and "@" in parsed.host:
        return f"the host part contains '@'; {_PERCENT_ENCODE_HINT}"
    return None


def _database_url(url: str) -> URL | None:
    # Imported here: reading settings should not cost a SQLAlchemy import (`dunning --help`).
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except Exception:  # SQLAlchemy raises ArgumentError or ValueError (a bad port)
        return None


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, parsed (never matched by a pattern), so
    it can be shown or logged. A URL that cannot be parsed is not shown at all."""
    scheme = url.partition("://")[0].lower()
    if scheme in BROKER_SCHEMES:
        return _mask_broker_url(url)
    parsed = _database_url(url)
    if parsed is None or "@" in (parsed.host or ""):
        return "<unreadable URL>"
    return parsed.render_as_string(hide_password=True)


def _broker_parts(url: str) -> SplitResult | None:
    parts = _split(url)
    # An '@' after the host part means the password was cut short by a / # or ? in it.
    if parts is None or "@" in f"{parts.path}{parts.query}{parts.fragment}":
        return None
    return parts


def _mask_broker_url(url: str) -> str:
    parts = _broker_parts(url)
    if parts is None:
        return "<unreadable URL>"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


_ENV_NAMES = {
    name: (field.validation_alias if isinstance(field.validation_alias, str) else name.upper())
    for name, field in Settings.model_fields.items()
}


def load_settings(**overrides: object) -> Settings:
    """Build the settings once; raise `SettingsError` with a one-line message on bad input.

    `overrides` use field names (e.g. `data_dir=Path(...)`) and win over the environment.
    """
    try:
        if overrides:
            aliased = {_ENV_NAMES.get(key, key): value for key, value in overrides.items()}
            return Settings(**cast("dict[str, Any]", aliased))
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"][0] if error["loc"] else "?"
        variable = _ENV_NAMES.get(str(loc), str(loc))
        message = str(error["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"invalid {variable}: {message}") from None

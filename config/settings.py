"""Typed settings, read once from the environment (and an optional `.env` file) and passed in.

Every variable is documented in README.md ("Configuration"). Nothing else in the project reads
`os.environ` for configuration: build a `Settings` with `load_settings()` at the edge (CLI,
Celery bootstrap, web server) and hand it down.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SANDBOX_API_KEY = "sandbox-key"


class LogFormat(StrEnum):
    AUTO = "auto"  # rich console on a terminal, JSON lines otherwise
    CONSOLE = "console"
    JSON = "json"


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
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("database_url", "broker_url")
    @classmethod
    def _blank_is_default(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        return value.strip()

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
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Folders of the embedded `filesystem://` broker (all on one filesystem)."""
        return (self.data_dir / "broker").resolve()

    @property
    def broker_is_redis(self) -> bool:
        return self.resolved_broker_url.startswith(("redis://", "rediss://"))


def mask_url(url: str) -> str:
    """Hide the password of a URL (`scheme://user:***@host/...`) so it can be logged."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


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

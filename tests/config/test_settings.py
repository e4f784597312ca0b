"""Settings: documented defaults, one-line errors naming the variable, secrets kept out of reprs,
and the CLI turning a bad value into one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import SettingsError, load_settings, mask_url


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file from the developer's checkout
    for name in (
        "LAGO_API_URL",
        "LAGO_API_KEY",
        "DUNNING_DATABASE_URL",
        "DUNNING_BROKER_URL",
        "DUNNING_DATA_DIR",
        "DUNNING_RATE_LIMIT_RPS",
        "DUNNING_LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_embedded_mode() -> None:
    settings = load_settings()
    assert settings.uses_sandbox
    assert settings.resolved_broker_url == "filesystem://"
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("/var/dunning.sqlite3")
    assert not settings.broker_is_redis


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DUNNING_RATE_LIMIT_RPS", "-1", "invalid DUNNING_RATE_LIMIT_RPS: "),
        ("DUNNING_RATE_LIMIT_RPS", "fast", "invalid DUNNING_RATE_LIMIT_RPS: "),
        ("LAGO_API_URL", "api.getlago.com", "invalid LAGO_API_URL: must start with http"),
        ("DUNNING_LOG_LEVEL", "LOUD", "invalid DUNNING_LOG_LEVEL: must be one of"),
        ("DUNNING_LEASE_SECONDS", "1", "invalid DUNNING_LEASE_SECONDS: "),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_secrets_and_url_passwords_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGO_API_KEY", "key-that-must-not-leak")
    monkeypatch.setenv("DUNNING_DATABASE_URL", "postgresql+psycopg://u:db-secret@db/dunning")
    monkeypatch.setenv("DUNNING_BROKER_URL", "redis://:redis-secret@cache:6379/0")
    settings = load_settings()
    text = f"{settings!r} {settings!s}"
    for secret in ("key-that-must-not-leak", "db-secret", "redis-secret"):
        assert secret not in text
    assert mask_url(settings.resolved_database_url) == "postgresql+psycopg://u:***@db/dunning"
    assert mask_url(settings.resolved_broker_url) == "redis://:***@cache:6379/0"
    assert settings.broker_is_redis


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_RATE_LIMIT_RPS", "10")
    monkeypatch.setenv("LAGO_API_URL", "https://lago.example.com/")
    settings = load_settings(rate_limit_rps=3)
    assert settings.rate_limit_rps == 3
    assert settings.lago_api_url == "https://lago.example.com"  # env still read, slash trimmed


def test_the_cli_reports_a_bad_setting_in_one_line_with_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "plan"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DUNNING_RATE_LIMIT_RPS": "-5", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: configuration error: invalid DUNNING_RATE_LIMIT_RPS: "
        "Input should be greater than or equal to 0"
    ]

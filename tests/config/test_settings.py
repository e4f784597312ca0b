"""Settings: documented defaults, one-line errors naming the variable, secrets kept out of reprs,
and the CLI turning a bad value into one line and exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

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
        "DUNNING_METRICS_PORT",
        "DUNNING_METRICS_ADDR",
        "DUNNING_METRICS_DIR",
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
        ("DUNNING_SEND_PROCESSES", "0", "invalid DUNNING_SEND_PROCESSES: "),
        ("DUNNING_SEND_PROCESSES", "17", "invalid DUNNING_SEND_PROCESSES: "),
        ("DUNNING_METRICS_PORT", "70000", "invalid DUNNING_METRICS_PORT: "),
        ("DUNNING_METRICS_PORT", "ninety", "invalid DUNNING_METRICS_PORT: "),
        ("DUNNING_METRICS_ADDR", "localhost:9", "invalid DUNNING_METRICS_ADDR: must be an IP"),
        ("DUNNING_SMTP_SECURITY", "ssl", "invalid DUNNING_SMTP_SECURITY: "),
        ("DUNNING_SMTP_PORT", "70000", "invalid DUNNING_SMTP_PORT: "),
        ("DUNNING_SMTP_CA_FILE", "/nonexistent/ca.pem", "invalid DUNNING_SMTP_CA_FILE: no such"),
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


def test_metrics_are_off_until_a_port_is_set_and_each_port_has_its_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DUNNING_METRICS_PORT", "")
    assert load_settings().resolved_metrics_dir is None
    monkeypatch.setenv("DUNNING_METRICS_PORT", "9101")
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    assert settings.metrics_addr == "127.0.0.1"
    assert settings.resolved_metrics_dir == tmp_path / "data" / "metrics" / "port-9101"
    monkeypatch.setenv("DUNNING_METRICS_DIR", str(tmp_path / "m"))
    assert load_settings().resolved_metrics_dir == tmp_path / "m"


def test_secrets_and_url_passwords_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGO_API_KEY", "key-that-must-not-leak")
    monkeypatch.setenv("DUNNING_DATABASE_URL", "postgresql+psycopg://u:db-secret@db/dunning")
    monkeypatch.setenv("DUNNING_BROKER_URL", "redis://:redis-secret@cache:6379/0")
    monkeypatch.setenv("DUNNING_SMTP_PASSWORD", "smtp-secret")
    settings = load_settings()
    text = f"{settings!r} {settings!s}"
    for secret in ("key-that-must-not-leak", "db-secret", "redis-secret", "smtp-secret"):
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


# -- the API key: stripped or refused at load, never echoed ------------------------------------


@pytest.mark.parametrize("padding", ["\n", "\r\n", "\r", " ", "\t\n"])
def test_api_key_surrounding_whitespace_is_stripped(
    monkeypatch: pytest.MonkeyPatch, padding: str
) -> None:
    monkeypatch.setenv("LAGO_API_KEY", f"{padding}lago-key-123{padding}")
    assert load_settings().lago_api_key.get_secret_value() == "lago-key-123"


@pytest.mark.parametrize(
    "key",
    ["secret part-two", "secret\npart-two", "secret\x01part", "sécret-part", "ключ-secret", " "],
)
def test_an_api_key_that_cannot_be_a_header_is_one_line_that_does_not_echo_it(key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(lago_api_key=key)
    message = str(caught.value)
    assert message.startswith("invalid LAGO_API_KEY: ")
    assert "\n" not in message
    for fragment in ("secret", "part", "ключ", "sécret"):
        assert fragment not in message


def test_an_empty_webhook_hmac_key_is_unset_and_whitespace_is_stripped() -> None:
    assert load_settings(webhook_hmac_key="  ").webhook_hmac_key is None
    key = load_settings(webhook_hmac_key="hmac-token\n").webhook_hmac_key
    assert key is not None
    assert key.get_secret_value() == "hmac-token"


# -- numbers and URLs that would crash or hang later ---------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e-9", "0.05", "10001", "1e308"])
def test_rate_limit_is_off_or_within_its_range(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DUNNING_RATE_LIMIT_RPS", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("invalid DUNNING_RATE_LIMIT_RPS: ")


@pytest.mark.parametrize("value", ["0", "0.1", "40", "10000"])
def test_rate_limit_accepts_off_and_its_range(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DUNNING_RATE_LIMIT_RPS", value)
    assert load_settings().rate_limit_rps == float(value)


def test_rate_limit_message_says_the_range() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(rate_limit_rps="1e-9")
    assert str(caught.value) == (
        "invalid DUNNING_RATE_LIMIT_RPS: must be 0 (no limit) or between 0.1 and 10000 requests/s"
    )


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://lago.example.com:port", "https://lago example.com", "http://:80"]
)
def test_a_lago_url_that_cannot_be_parsed_is_one_line(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(lago_api_url=url)
    assert str(caught.value).startswith("invalid LAGO_API_URL: ")


@pytest.mark.parametrize(
    "url", ["garbage://x", "memory://", "amqp://guest:guest@rabbit//", "sqla+sqlite:///x", "x"]
)
def test_only_the_supported_brokers_are_accepted(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(broker_url=url)
    assert str(caught.value) == (
        "invalid DUNNING_BROKER_URL: unsupported broker; use one of redis://, rediss://, "
        "filesystem://"
    )


# Passwords with every character that breaks a URL when written as is.
SPECIAL_PASSWORDS = [
    "Tq7/mZ9-vault",
    "Tq7@mZ9-vault",
    "Tq7:mZ9-vault",
    "Tq7#mZ9-vault",
    "Tq7?mZ9-vault",
    "Tq7%mZ9-vault",
]


def _fragments(password: str) -> list[str]:
    """Pieces of the password a half-masked URL could still show."""
    return [piece for piece in re.split(r"[/@:#?%]", password) if piece]


@pytest.mark.parametrize("password", ["Tq7/mZ9-vault", "Tq7#mZ9-vault", "Tq7?mZ9-vault"])
def test_a_broker_password_that_cuts_the_url_is_refused_with_the_encoding_hint(
    password: str,
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(broker_url=f"redis://:{password}@cache:6379/0")
    message = str(caught.value)
    assert message.startswith("invalid DUNNING_BROKER_URL: cannot be read as redis://")
    assert "percent-encode" in message
    assert "%2F" in message
    for fragment in _fragments(password):
        assert fragment not in message


@pytest.mark.parametrize("password", SPECIAL_PASSWORDS)
def test_a_percent_encoded_broker_password_is_accepted_decoded_and_masked(password: str) -> None:
    import kombu
    import redis

    url = f"redis://:{quote(password, safe='')}@cache:6379/0"
    settings = load_settings(broker_url=url)
    assert kombu.Connection(settings.resolved_broker_url).password == password
    pool = redis.Redis.from_url(settings.resolved_broker_url).connection_pool
    assert pool.connection_kwargs["password"] == password
    shown = mask_url(settings.resolved_broker_url)
    assert shown == "redis://:***@cache:6379/0"


@pytest.mark.parametrize("password", SPECIAL_PASSWORDS)
def test_a_database_password_is_masked_whatever_it_contains(password: str) -> None:
    for written in {password, quote(password, safe="")} - {"Tq7@mZ9-vault"}:
        url = f"postgresql+psycopg://dunning:{written}@db.example:5432/dunning"
        settings = load_settings(database_url=url)
        shown = mask_url(settings.resolved_database_url)
        assert shown == "postgresql+psycopg://dunning:***@db.example:5432/dunning"
        for fragment in _fragments(password):
            assert fragment not in shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("garbage", "is not a database URL"),
        ("postgresql+psycopg://u:pa/b@c:d#e@db/x", "is not a database URL"),
        ("postgresql+psycopg://u:Tq7@mZ9-vault@db/x", "the host part contains '@'"),
        ("mysql://u:mZ9-vault@db/x", "unsupported database"),
        ("postgresql+psycopg2://u:mZ9-vault@db/x", "unsupported database"),
    ],
)
def test_a_database_url_that_cannot_be_used_is_one_line_without_the_password(
    url: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(database_url=url)
    message = str(caught.value)
    assert message.startswith(f"invalid DUNNING_DATABASE_URL: {expected}")
    assert "mZ9-vault" not in message
    assert "pa/b" not in message


def test_mask_url_never_shows_what_it_cannot_parse() -> None:
    assert mask_url("postgresql+psycopg://u:pa/b@c:d#e@db/x") == "<unreadable URL>"
    assert mask_url("redis://:Tq7/mZ9-vault@cache:6379/0") == "<unreadable URL>"
    assert mask_url("filesystem://") == "filesystem://"
    assert mask_url("redis://cache:6379/0") == "redis://cache:6379/0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DUNNING_RATE_LIMIT_RPS", "inf"),
        ("DUNNING_RATE_LIMIT_RPS", "1e-9"),
        ("LAGO_API_URL", "http://[::1"),
        ("LAGO_API_KEY", "ключ-Zx9secret"),
        ("LAGO_API_KEY", "Zx9 secret"),
        ("DUNNING_BROKER_URL", "garbage://x"),
        ("DUNNING_BROKER_URL", "redis://:Zx9/secret@cache:6379/0"),
        ("DUNNING_DATABASE_URL", "postgresql+psycopg://u:Zx9/b@c:d#secret@db/x"),
        ("DUNNING_DATABASE_URL", "mysql://u:Zx9secret@db/x"),
    ],
)
def test_the_cli_refuses_each_bad_setting_in_one_line_exit_2_writing_nothing(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variable: str,
    value: str,
) -> None:
    from worker.cli import main

    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(sys, "argv", ["dunning", "status"])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: configuration error: invalid {variable}: ")
    assert "Zx9" not in captured.err + captured.out
    assert "secret" not in captured.err + captured.out
    assert list(tmp_path.iterdir()) == []  # no data dir, no database file

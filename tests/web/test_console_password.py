"""`dunning console-password` and the hashes it prints: scrypt with a random salt, the
parameters carried in the hash, hashes that cannot be read refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import SettingsError, load_settings
from worker.web.console.passwords import (
    PasswordHashError,
    check_hash,
    hash_password,
    verify_password,
)

DUNNING = str(Path(sys.executable).with_name("dunning"))


def _console_password(stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DUNNING, "console-password"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_prints_a_salted_scrypt_hash_of_the_password_on_stdin() -> None:
    first = _console_password("correct horse battery staple\n")
    second = _console_password("correct horse battery staple\n")
    assert first.returncode == 0, first.stderr
    hashed = first.stdout.strip()
    assert hashed.startswith("scrypt$n=32768,r=8,p=1$")
    assert "correct horse" not in first.stdout + first.stderr
    assert verify_password("correct horse battery staple", hashed)
    assert not verify_password("correct horse battery stapl", hashed)
    assert second.stdout.strip() != hashed  # a new salt each time
    assert load_settings(console_password_hash=hashed).console_enabled


def test_a_short_password_is_refused_in_one_line() -> None:
    result = _console_password("too short\n")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == "error: the password must have at least 12 characters"


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        ("bcrypt$whatever", "not a scrypt hash"),
        ("scrypt$n=32768$x$y", "damaged"),
        ("scrypt$n=1000,r=8,p=1$c2FsdA==$" + "A" * 44, "unusable scrypt parameters"),
        ("scrypt$n=1073741824,r=8,p=1$c2FsdA==$" + "A" * 44, "unusable scrypt parameters"),
        ("scrypt$n=1024,r=8,p=1$c2FsdA==$c2hvcnQ=", "damaged"),
    ],
)
def test_a_hash_that_cannot_be_used_is_refused(encoded: str, problem: str) -> None:
    with pytest.raises(PasswordHashError, match=problem) as caught:
        check_hash(encoded)
    assert encoded not in str(caught.value)


def test_the_parameters_travel_with_the_hash() -> None:
    cheap = hash_password("a password of length", n=2**10, r=4)
    assert cheap.startswith("scrypt$n=1024,r=4,p=1$")
    assert verify_password("a password of length", cheap)


def test_settings_refuse_what_is_not_a_console_hash_or_a_short_key() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(console_password_hash="hunter2hunter2")
    assert str(caught.value) == (
        "invalid DUNNING_CONSOLE_PASSWORD_HASH: is not a hash from `dunning console-password` "
        "(scrypt$...)"
    )
    assert "hunter2" not in str(caught.value)
    with pytest.raises(SettingsError, match="DUNNING_CONSOLE_SECRET_KEY: must be at least 32"):
        load_settings(console_secret_key="short")
    assert not load_settings(console_password_hash="  ").console_enabled


def test_console_secrets_are_secrets_of_the_settings() -> None:
    hashed = hash_password("a password of length", n=2**10)
    settings = load_settings(console_password_hash=hashed, console_secret_key="k" * 40)
    assert hashed in settings.secret_values()
    assert "k" * 40 in settings.secret_values()
    assert hashed not in repr(settings)

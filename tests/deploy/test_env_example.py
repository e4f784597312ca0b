""".env.example documents every setting, and its values are the real defaults."""

from __future__ import annotations

import re

import pytest

from config.settings import Settings
from tests.deploy.conftest import ROOT

ENV_EXAMPLE = ROOT / ".env.example"
LINE = re.compile(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


def documented() -> dict[str, tuple[bool, str]]:
    """NAME -> (active, value); commented-out assignments count as documented, inactive."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = LINE.match(line)
        if match:
            found[match.group(2)] = (match.group(1) is None, match.group(3))
    return found


def setting_names() -> set[str]:
    return {
        field.validation_alias
        for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, str)
    }


def test_every_setting_is_listed() -> None:
    assert setting_names() - set(documented()) == set()


def test_every_listed_variable_has_a_comment_above_it() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        match = LINE.match(line)
        if match and match.group(1) is None:
            assert lines[index - 1].startswith("#"), f"{match.group(2)} has no comment"


def test_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    from_example = Settings(_env_file=ENV_EXAMPLE)
    defaults = Settings(_env_file=None)
    assert from_example.model_dump() == defaults.model_dump()

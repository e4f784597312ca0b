"""load_policies(): a valid file gives a frozen PolicySet; every error kind is one useful line."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from config.policies import PolicyFileError, PolicySet, load_policies
from tests.fixtures.hostile import alias_bomb

REPO_ROOT = Path(__file__).resolve().parents[2]

VALID = """\
version: 1
schedule:
  cron: "0 * * * *"
policies:
  - name: main
    match: {currencies: [usd, EUR], countries: [us]}
    min_overdue_cents: {USD: 5000, EUR: 100}
    max_attempts: {USD: 3, EUR: 2}
    send_window: {start_hour: 9, end_hour: 18, weekdays: [Monday, tue]}
    on_exhausted: {action: webhook, url: "https://hooks.example.com/x"}
  - name: rest
    min_overdue_cents: {GBP: 0}
"""


def write(tmp_path: Path, text: str, name: str = "policies.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def policy(body: str) -> str:
    """A one-policy file whose policy has the given extra keys (YAML, 4-space indent)."""
    return f"version: 1\npolicies:\n  - name: p\n    min_overdue_cents: {{USD: 1}}\n{body}"


def test_valid_file_loads(tmp_path: Path) -> None:
    policies = load_policies(write(tmp_path, VALID))

    assert [p.name for p in policies.policies] == ["main", "rest"]
    assert policies.cron == "0 * * * *"
    main = policies.policies[0]
    assert main.match.currencies == ("USD", "EUR")
    assert main.match.countries == ("US",)
    assert main.send_window is not None
    assert main.send_window.weekdays == ("mon", "tue")
    assert main.max_attempts_for("EUR") == 2
    assert main.threshold_for("GBP") is None
    assert policies.policies[1].max_attempts_for("GBP") == 1  # Lago's default


def test_defaults(tmp_path: Path) -> None:
    policies = load_policies(write(tmp_path, policy("")))
    only = policies.policies[0]

    assert policies.cron == "*/15 * * * *"
    assert (only.grace_days, only.days_between_attempts, only.max_attempts) == (0, 1, 1)
    assert only.send_window is None
    assert only.on_exhausted.action == "stop"
    assert only.match.describe() == "any"


def test_version_hash_follows_the_bytes(tmp_path: Path) -> None:
    first = load_policies(write(tmp_path, VALID, "a.yaml"))
    same = load_policies(write(tmp_path, VALID, "b.yaml"))
    changed = load_policies(write(tmp_path, VALID + "# a comment\n", "c.yaml"))

    assert first.version_hash == same.version_hash
    assert first.version_hash != changed.version_hash
    assert len(first.version_hash) == 12


def test_policy_set_is_frozen(tmp_path: Path) -> None:
    policies = load_policies(write(tmp_path, VALID))

    with pytest.raises(dataclasses.FrozenInstanceError):
        policies.cron = "* * * * *"  # type: ignore[misc]
    with pytest.raises(Exception, match="frozen"):
        policies.policies[0].grace_days = 9  # type: ignore[misc]


def test_shipped_example_file_is_valid() -> None:
    policies = load_policies(REPO_ROOT / "config" / "policies.yaml")

    assert isinstance(policies, PolicySet)
    assert len(policies.policies) >= 1


@pytest.mark.parametrize(
    ("text", "location", "fix"),
    [
        pytest.param("version: 1\npolicies:\n  - name: [unclosed\n", "line 4",
                     "fix the syntax", id="invalid-yaml-line"),
        pytest.param("version: 1\nversion: 1\npolicies: []\n", "line 2", "keep only one",
                     id="duplicate-yaml-key"),
        pytest.param("- just\n- a list\n", "policies.yaml", "not a mapping",
                     id="not-a-mapping"),
        pytest.param("", "policies.yaml", "empty", id="empty-file"),
        pytest.param("version: 1\npolicies: []\n", "policies", "at least one policy",
                     id="no-policies"),
        pytest.param("version: 2\npolicies: []\n", "version", "must be one of 1",
                     id="unknown-version"),
        pytest.param(policy("    grace_day: 3\n"), "policies[0].grace_day",
                     "did you mean 'grace_days'", id="unknown-key"),
        pytest.param("version: 1\nextra: 1\npolicies: []\n", "extra", "remove it",
                     id="unknown-top-level-key"),
        pytest.param("version: 1\nschedule: {cron: '61 * * * *'}\n" + policy("")[11:],
                     "schedule.cron", "use 5 fields", id="bad-cron"),
        pytest.param("version: 1\nschedule: {cron: '* * * * * *'}\n" + policy("")[11:],
                     "schedule.cron", "use 5 fields", id="six-field-cron"),
        pytest.param(policy("    max_attempts: {USD: 2, XYZ: 1}\n"),
                     "policies[0].max_attempts.XYZ (key)", "ISO 4217", id="unknown-currency"),
        pytest.param(policy("    match: {countries: [ZZ]}\n"), "policies[0].match.countries[0]",
                     "ISO 3166-1 alpha-2", id="unknown-country"),
        pytest.param(policy("    send_window: {start_hour: 9, end_hour: 17, "
                            "fallback_timezone: Mars/Base}\n"),
                     "policies[0].send_window.fallback_timezone", "IANA name",
                     id="unknown-timezone"),
        pytest.param("version: 1\npolicies:\n  - name: p\n    min_overdue_cents: {USD: -5}\n",
                     "policies[0].min_overdue_cents.USD", "must be >= 0 (got -5)",
                     id="negative-amount"),
        pytest.param(policy("    send_window: {start_hour: 18, end_hour: 9}\n"),
                     "policies[0].send_window", "must be before end_hour", id="start-after-end"),
        pytest.param(policy("    send_window: {start_hour: 9, end_hour: 25}\n"),
                     "policies[0].send_window.end_hour", "must be <= 24", id="hour-above-24"),
        pytest.param(policy("    send_window: {start_hour: 9, end_hour: 17, weekdays: [funday]}\n"),
                     "policies[0].send_window.weekdays[0]", "must be one of", id="bad-weekday"),
        pytest.param(policy("    match: {metadata: {dunning: off}}\n"),
                     "policies[0].match.metadata.dunning", "quote it", id="unquoted-off"),
        pytest.param(policy("    grace_days: '3'\n"), "policies[0].grace_days",
                     "whole number", id="number-as-text"),
        pytest.param(policy("    max_attempts: 0\n"), "policies[0].max_attempts", ">= 1",
                     id="zero-attempts"),
        pytest.param(policy("    max_attempts: {EUR: 2}\n"), "policies[0].max_attempts",
                     "no entry for USD", id="per-currency-attempts-incomplete"),
        pytest.param(policy("    on_exhausted: {action: webhook}\n"), "policies[0].on_exhausted",
                     "needs a url", id="webhook-without-url"),
        pytest.param(policy("    on_exhausted: {action: webhook, url: 'ftp://x'}\n"),
                     "policies[0].on_exhausted.url", "http(s) URL", id="bad-webhook-url"),
        pytest.param(policy("    email: not-an-email\n"), "policies[0].email",
                     "billing@example.com", id="bad-email"),
        pytest.param(policy("    match: {currencies: []}\n"), "policies[0].match.currencies",
                     "omit the key", id="empty-criterion"),
        pytest.param(policy("  - name: p\n    min_overdue_cents: {USD: 1}\n"),
                     "policies[1].name", "must be unique", id="duplicate-name"),
        pytest.param("version: 1\npolicies:\n  - name: p\n", "policies[0].min_overdue_cents",
                     "add it", id="missing-required"),
        pytest.param("version: 1\npolicies:\n  - due: 2024-13-45\n", "policies.yaml",
                     "quote it", id="impossible-date"),
    ],
)  # fmt: skip
def test_error_is_one_line_with_file_location_and_fix(
    tmp_path: Path, text: str, location: str, fix: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(PolicyFileError) as caught:
        load_policies(path)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert location in message
    assert fix in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(PolicyFileError, match=r"nope\.yaml: file not found; check the path"):
        load_policies(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="is a directory"):
        load_policies(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    path.chmod(0)
    try:
        with pytest.raises(PolicyFileError, match="permission denied; make the file readable"):
            load_policies(path)
    finally:
        path.chmod(0o600)


def test_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"version: 1\npolicies: \xff\xfe\n")

    with pytest.raises(PolicyFileError, match="invalid YAML") as caught:
        load_policies(path)
    assert "\n" not in str(caught.value)


def test_path_through_a_file_cannot_be_read(tmp_path: Path) -> None:
    blocker = write(tmp_path, VALID)

    with pytest.raises(PolicyFileError, match=r"cannot be read \(.+\); check the file"):
        load_policies(blocker / "policies.yaml")


# -- hostile files: bounded before parsing, one line each ----------------------------------------


@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path, levels: int) -> None:
    path = write(tmp_path, alias_bomb(levels))
    assert path.stat().st_size < 600  # the 9-level one is the 478-byte bomb of the report

    with pytest.raises(PolicyFileError) as caught:
        load_policies(path)

    assert str(caught.value) == (
        f"{path}: YAML expands to more than 200000 values through its aliases (*name); "
        "write the values out or share fewer of them"
    )


def test_anchors_and_merge_keys_that_stay_small_are_fine(tmp_path: Path) -> None:
    text = """\
version: 1
policies:
  - name: eu
    match: {currencies: [EUR]}
    min_overdue_cents: &floor {USD: 5000, EUR: 5000}
    send_window: &office {start_hour: 9, end_hour: 17, weekdays: [mon, tue, wed, thu, fri]}
  - name: us
    min_overdue_cents: *floor
    send_window:
      <<: *office
      fallback_timezone: America/New_York
"""
    policies = load_policies(write(tmp_path, text))
    us = policies.policies[1]
    assert us.min_overdue_cents == {"USD": 5000, "EUR": 5000}
    assert us.send_window is not None
    assert (us.send_window.start_hour, us.send_window.fallback_timezone) == (
        9,
        "America/New_York",
    )


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nloop: &loop [*loop]\npolicies: []\n")
    with pytest.raises(PolicyFileError) as caught:
        load_policies(path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_policy_file_over_1_mib_is_refused_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # 17 MB (sparse: nothing to write)

    with pytest.raises(PolicyFileError) as caught:
        load_policies(path)

    assert str(caught.value) == (
        f"{path}: is larger than 1 MiB; a policy file is a few kilobytes: check the path"
    )


def test_an_endless_file_is_refused_too() -> None:
    with pytest.raises(PolicyFileError, match="is larger than 1 MiB"):
        load_policies("/dev/zero")


@pytest.mark.parametrize(
    "zone", ["America", "America/", "Europe", "../../etc/passwd", "/etc/hosts"]
)
def test_a_timezone_that_is_a_directory_or_a_path_is_an_unknown_timezone(
    tmp_path: Path, zone: str
) -> None:
    text = policy(
        f'    send_window: {{start_hour: 9, end_hour: 17, fallback_timezone: "{zone}"}}\n'
    )
    with pytest.raises(PolicyFileError) as caught:
        load_policies(write(tmp_path, text))
    assert str(caught.value).endswith(
        f"policies[0].send_window.fallback_timezone: unknown timezone {zone!r}; "
        "use an IANA name such as Europe/Paris or UTC"
    )

"""What a running `dunning run` records in its data dir, and how other commands use it."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import load_settings
from worker.cli.instance import adopt_instance
from worker.services.instance import (
    InstanceRecord,
    key_reference,
    read_record,
    remove_record,
    write_record,
)

SANDBOX_URL = "http://127.0.0.1:18765"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("DUNNING_", "LAGO_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return tmp_path / "var"


def _record(data_dir: Path, **changes: object) -> InstanceRecord:
    settings = load_settings(data_dir=data_dir, policy_file=data_dir / "demo.yaml")
    record = InstanceRecord.for_this_process(settings, lago_url=SANDBOX_URL, log_file=None)
    record = replace(record, **changes)  # type: ignore[arg-type]
    write_record(data_dir, record)
    return record


def test_commands_fill_what_they_were_not_told_and_say_so(data_dir: Path) -> None:
    _record(data_dir)
    adopted, note = adopt_instance(load_settings(data_dir=data_dir))
    assert adopted.lago_api_url == SANDBOX_URL
    assert adopted.policy_file == (data_dir / "demo.yaml").resolve()
    assert note is not None
    assert note.startswith(f"using the running `dunning run` (pid {os.getpid()}): ")
    assert f"Lago {SANDBOX_URL} (sandbox)" in note


def test_what_a_command_was_told_wins(data_dir: Path) -> None:
    _record(data_dir)
    told = load_settings(
        data_dir=data_dir, lago_api_url="https://lago.example", policy_file=Path("mine.yaml")
    )
    adopted, note = adopt_instance(told)
    assert (adopted.lago_api_url, adopted.policy_file) == (
        "https://lago.example",
        Path("mine.yaml"),
    )
    assert note is None


def test_a_record_whose_process_is_gone_is_ignored(data_dir: Path) -> None:
    record = _record(data_dir, process_started_at=1.0)  # the pid now belongs to another start
    assert read_record(data_dir) is None
    adopted, note = adopt_instance(load_settings(data_dir=data_dir))
    assert (adopted.lago_api_url, note) == (None, None)
    payload = json.loads((data_dir / "instance.json").read_text())
    assert payload["pid"] == record.pid


def test_no_secret_is_written_and_a_password_url_is_not_guessed(data_dir: Path) -> None:
    settings = load_settings(
        data_dir=data_dir,
        lago_api_key=SecretStr("live-key-123"),
        database_url="postgresql+psycopg://dunning:hunter2@db/dunning",
    )
    record = InstanceRecord.for_this_process(
        settings, lago_url="https://lago.example", log_file=None
    )
    write_record(data_dir, record)
    text = (data_dir / "instance.json").read_text()
    assert "hunter2" not in text
    assert "live-key-123" not in text
    assert record.lago_key == key_reference(settings) != "sandbox default"
    adopted, note = adopt_instance(load_settings(data_dir=data_dir))
    assert note is not None
    assert "its database URL holds a password: set DUNNING_DATABASE_URL here" in note
    assert "its Lago API key differs from LAGO_API_KEY here" in note
    assert adopted.database_url is None  # not the masked URL


def test_remove_leaves_another_instances_record(data_dir: Path) -> None:
    record = _record(data_dir)
    write_record(data_dir, replace(record, pid=record.pid + 1))
    remove_record(data_dir)
    assert (data_dir / "instance.json").exists()
    write_record(data_dir, record)
    remove_record(data_dir)
    assert not (data_dir / "instance.json").exists()

"""Commands agree with the running `dunning run`: what it runs fills what they were not told.

A `dunning run` records its Lago URL, policy file, broker and database in the data dir
(`worker.services.instance`). Another command with the same data dir and nothing else set
uses them, and says so on one line (stderr), so `plan` in a second terminal plans against the
sandbox and the policy the worker uses, not against defaults that contradict it.
"""

from __future__ import annotations

from pathlib import Path

from config import Settings
from worker.services.instance import InstanceRecord, key_reference, read_record

MASKED = "***"


def running_instance(settings: Settings) -> InstanceRecord | None:
    return read_record(settings.data_dir)


def adopt_instance(settings: Settings) -> tuple[Settings, str | None]:
    """`settings` completed from the running instance; the note to print, or None when it
    changed nothing."""
    record = running_instance(settings)
    if record is None:
        return settings, None
    updates: dict[str, object] = {}
    used: list[str] = []
    warnings: list[str] = []
    if settings.lago_api_url is None:
        updates["lago_api_url"] = record.lago_api_url
        used.append(f"Lago {record.lago_api_url}" + (" (sandbox)" if record.sandbox else ""))
        if record.lago_key != key_reference(settings):
            warnings.append("its Lago API key differs from LAGO_API_KEY here")
    if "policy_file" not in settings.model_fields_set and Path(record.policy_file) != Path(
        settings.policy_file
    ).resolve(strict=False):
        updates["policy_file"] = Path(record.policy_file)
        used.append(f"policy {_short(record.policy_file)}")
    for field, variable, label in (
        ("database_url", "DUNNING_DATABASE_URL", "database"),
        ("broker_url", "DUNNING_BROKER_URL", "broker"),
    ):
        theirs = getattr(record, field)
        ours = getattr(settings, f"resolved_{field}")
        if getattr(settings, field) is not None or theirs == ours:
            continue
        if MASKED in theirs:
            warnings.append(f"its {label} URL holds a password: set {variable} here")
            continue
        updates[field] = theirs
        used.append(f"{label} {theirs}")
    if not used and not warnings:
        return settings, None
    note = f"using the running `dunning run` (pid {record.pid}): " + (", ".join(used) or "-")
    if warnings:
        note += "; " + "; ".join(warnings)
    return settings.model_copy(update=updates), note


def _short(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path

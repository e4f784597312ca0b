"""What a running `dunning run` runs, recorded in its data dir, and why it must stop.

- `instance.json`: the Lago URL (and a reference to its key, never the key), the policy file,
  the broker and the database of the running instance. Other commands started with the same
  data dir use it for what they were not told (`worker.cli.instance`), so `plan`, `status` or
  `report` in a second terminal agree with the worker. Removed when `dunning run` stops; a
  record whose process is gone is ignored.
- `licence.json`: the Lago instances (by URL) seen to refuse payment requests for lack of the
  premium licence, so a policy on `channel: auto` goes straight to its fallback after the
  first refusal. Delete it after activating the licence.
- `halt.json`: written by a worker task that met a failure no retry can fix (the API key is
  rejected, the Lago instance lacks the premium licence). `dunning run` watches for it and
  stops with that one line.

No secret is written: URLs are masked when they hold a password, the key is a fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from config import Settings, mask_url
from config.settings import DEFAULT_SANDBOX_API_KEY

RECORD_FILE = "instance.json"
HALT_FILE = "halt.json"
LICENCE_FILE = "licence.json"

HaltCode = Literal["api_key_rejected", "licence_missing"]
#: One line each: the cause and the fix.
HALT_MESSAGES: dict[HaltCode, str] = {
    "api_key_rejected": "Lago rejected the API key: check LAGO_API_KEY",
    "licence_missing": (
        "this Lago instance lacks the premium licence, so it refuses payment requests: "
        "activate it, then `dunning retry INTENT_ID` the intents `dunning status` lists as "
        "blocked"
    ),
}


def key_reference(settings: Settings) -> str:
    """Which key is used, without the key: `sandbox default` or `sha256:<8 hex digits>`."""
    key = settings.lago_api_key.get_secret_value()
    if key == DEFAULT_SANDBOX_API_KEY:
        return "sandbox default"
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    pid: int
    process_started_at: float  # the process's start time, so a reused pid is not taken for it
    started_at: str
    lago_api_url: str
    sandbox: bool
    lago_key: str  # `key_reference()`
    policy_file: str
    broker_url: str  # masked when it holds a password
    database_url: str  # masked when it holds a password
    log_file: str | None

    @staticmethod
    def for_this_process(
        settings: Settings, *, lago_url: str, log_file: Path | None
    ) -> InstanceRecord:
        import psutil

        return InstanceRecord(
            pid=os.getpid(),
            process_started_at=psutil.Process().create_time(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            lago_api_url=lago_url,
            sandbox=settings.uses_sandbox,
            lago_key=key_reference(settings),
            policy_file=str(Path(settings.policy_file).resolve()),
            broker_url=mask_url(settings.resolved_broker_url),
            database_url=mask_url(settings.resolved_database_url),
            log_file=str(log_file) if log_file else None,
        )


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=2)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def write_record(data_dir: Path, record: InstanceRecord) -> Path:
    path = data_dir / RECORD_FILE
    _write_json(path, asdict(record))
    return path


def _alive(pid: int, started_at: float) -> bool:
    # Imported here: every command reads the record, and only finds one to check when a
    # `dunning run` wrote it (psutil costs ~7 ms at each start).
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - started_at) < 1.0
    except (psutil.Error, OSError):
        return False


def read_record(data_dir: Path) -> InstanceRecord | None:
    """The record of a `dunning run` still running with this data dir, or None."""
    payload = _read_json(data_dir / RECORD_FILE)
    if payload is None:
        return None
    try:
        record = InstanceRecord(**payload)
    except TypeError:
        return None
    return record if _alive(record.pid, record.process_started_at) else None


def remove_record(data_dir: Path) -> None:
    """Remove this process's record (not one another instance wrote since)."""
    payload = _read_json(data_dir / RECORD_FILE)
    if payload is not None and payload.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            (data_dir / RECORD_FILE).unlink()


@dataclass(frozen=True, slots=True)
class Halt:
    code: HaltCode
    message: str  # one line: the cause and the fix
    at: str


def record_halt(data_dir: Path, code: HaltCode) -> None:
    """Ask the supervising `dunning run` to stop (the first halt recorded wins)."""
    if (data_dir / HALT_FILE).exists():
        return
    halt = Halt(
        code=code, message=HALT_MESSAGES[code], at=datetime.now(UTC).isoformat(timespec="seconds")
    )
    with contextlib.suppress(OSError):  # nobody may be watching: the task logs it anyway
        _write_json(data_dir / HALT_FILE, asdict(halt))


def read_halt(data_dir: Path) -> Halt | None:
    payload = _read_json(data_dir / HALT_FILE)
    if payload is None:
        return None
    try:
        return Halt(**payload)
    except TypeError:
        return None


def clear_halt(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / HALT_FILE).unlink()


class LicenceMemory:
    """Whether a Lago instance is known to refuse payment requests (no premium licence),
    remembered in the data dir so every process with it agrees."""

    def __init__(self, data_dir: Path, lago_api_url: str) -> None:
        self.path = data_dir / LICENCE_FILE
        self.lago_api_url = lago_api_url

    def known_unlicensed(self) -> bool:
        payload = _read_json(self.path) or {}
        return self.lago_api_url in payload.get("unlicensed", {})

    def remember_unlicensed(self) -> None:
        payload = _read_json(self.path) or {}
        seen = payload.get("unlicensed")
        seen = dict(seen) if isinstance(seen, dict) else {}
        seen.setdefault(self.lago_api_url, datetime.now(UTC).isoformat(timespec="seconds"))
        with contextlib.suppress(OSError):  # the next refusal remembers it again
            _write_json(self.path, {"unlicensed": seen})

"""Policies: the active policy file as written, whether it loads, and what it says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.policies import MAX_FILE_BYTES, PolicyFileError, load_policies


def active_policies(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_FILE_BYTES + 1).decode("utf-8", errors="replace")
    except OSError as exc:
        text = f"(cannot read the file: {exc.strerror or type(exc).__name__})"
    try:
        loaded = load_policies(path)
    except PolicyFileError as exc:
        return {"path": path, "text": text, "error": str(exc), "policies": None}
    return {"path": path, "text": text, "error": None, "policies": loaded}

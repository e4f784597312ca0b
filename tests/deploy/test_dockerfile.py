"""Dockerfile and .dockerignore, checked statically: multi-stage, locked, non-root, no secrets."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.deploy.conftest import ROOT

SECRET_NAME = re.compile(r"(KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL|BROKER_URL)", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert pending == "", "Dockerfile ends inside a continuation"
    result = []
    for line in logical:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_is_multi_stage() -> None:
    stages = [args for word, args in instructions() if word == "FROM"]
    assert len(stages) >= 2
    assert any(" AS build" in s for s in stages)


def test_dependencies_come_from_the_lock_file_without_dev_tools() -> None:
    runs = [args for word, args in instructions() if word == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs
    for sync in syncs:
        assert "--frozen" in sync
        assert "--no-dev" in sync
    assert not any("pip install" in r for r in runs)


def test_runs_as_a_non_root_user() -> None:
    users = [args for word, args in final_stage() if word == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    created = " ".join(args for word, args in final_stage() if word == "RUN")
    assert "useradd" in created
    assert user in created


def test_no_secrets_are_baked_in() -> None:
    for word, args in instructions():
        if word in {"ENV", "ARG"}:
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            secret = [n for n in names if SECRET_NAME.search(n)]
            assert secret == [], f"{word} {args}"
        if word in {"COPY", "ADD"}:
            sources = shlex.split(args)[:-1]
            assert not any(".env" in s for s in sources), args
            assert not any(s in {".", "./"} for s in sources), "copies the whole context"


def test_default_command_is_the_worker() -> None:
    cmds = [args for word, args in final_stage() if word == "CMD"]
    assert cmds
    assert '"celery", "-A", "worker", "worker"' in cmds[-1]


@pytest.mark.parametrize("entry", [".env", ".git", ".venv", "var", "tests", "**/__pycache__"])
def test_dockerignore_keeps_secrets_and_state_out(entry: str) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert entry in lines

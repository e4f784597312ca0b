"""The README's deploy section against docker-compose.yml, and the compose file against
`.env.example`: every service's command, environment and dependencies as documented, and
`cp .env.example .env && docker compose --profile sandbox up` resolving to a working stack.

No Docker engine here: the compose file is parsed and interpolated the way Compose does it
(`${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `$$`), with `.env` read like Compose reads it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from config.settings import Settings
from tests.deploy.conftest import ROOT

APP_SERVICES = ("migrate", "worker", "beat", "serve", "flower")
CONDITIONS = {"healthy": "service_healthy", "completed": "service_completed_successfully"}
_VARIABLE = re.compile(r"\$\$|\$\{([A-Z_][A-Z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


class MissingVariableError(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, colon, operator, argument = match.groups()
        present = name in env and (not colon or env[name] != "")
        if operator == "-":
            return env[name] if present else argument
        if operator == "?":
            if not present:
                raise MissingVariableError(f"{name}: {argument}")
            return env[name]
        return env.get(name, "")

    return _VARIABLE.sub(replace, value)


def resolved(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolved(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(value, env) for value in node]
    return node


def dotenv(text: str) -> dict[str, str]:
    """`.env` as Compose reads it: KEY=VALUE lines, comments and blank lines skipped."""
    found = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip()
    return found


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def readme_services() -> dict[str, dict[str, Any]]:
    """The table of the README's "Deploying with Docker Compose" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Deploying with Docker Compose", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, Any]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        name, command, waits, profile = cells
        rows[name.strip("`")] = {
            "command": command.strip("`") if command.startswith("`") else None,
            "depends_on": {
                service: CONDITIONS[condition]
                for service, condition in re.findall(r"`([a-z]+)` (healthy|completed)", waits)
            },
            "profiles": [profile.strip("`")] if profile else [],
        }
    return rows


def test_the_readme_table_lists_every_service(services: dict[str, Any]) -> None:
    assert set(readme_services()) == set(services)


@pytest.mark.parametrize(
    "name", ["postgres", "redis", *APP_SERVICES, "sandbox", "prometheus", "grafana"]
)
def test_each_service_runs_and_waits_as_the_readme_says(
    services: dict[str, Any], name: str
) -> None:
    documented = readme_services()[name]
    service = services[name]
    if documented["command"] is None:
        assert "command" not in service
    else:
        assert _command(service) == documented["command"]
    depends = {
        other: condition["condition"] for other, condition in service.get("depends_on", {}).items()
    }
    assert depends == documented["depends_on"]
    assert service.get("profiles", []) == documented["profiles"]


def test_the_sandbox_is_waited_for_only_when_its_profile_runs(services: dict[str, Any]) -> None:
    for name in ("worker", "beat", "serve"):
        assert services[name]["depends_on"]["sandbox"]["required"] is False


def test_application_services_share_one_environment(services: dict[str, Any]) -> None:
    environments = [services[name]["environment"] for name in APP_SERVICES]
    assert all(env == environments[0] for env in environments)
    env = environments[0]
    assert env["DUNNING_DATABASE_URL"] == "postgresql+psycopg://dunning@postgres:5432/dunning"
    assert env["PGPASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    assert env["DUNNING_BROKER_URL"] == "redis://redis:6379/0"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    # the sandbox accepts exactly the key the applications send
    assert services["sandbox"]["environment"] == {"SANDBOX_API_KEY": env["LAGO_API_KEY"]}


def _stack(compose: dict[str, Any], **changes: str) -> dict[str, Any]:
    env = dotenv((ROOT / ".env.example").read_text())
    env.update(changes)
    stack: dict[str, Any] = resolved(compose["services"], env)
    return stack


def test_env_example_as_is_starts_the_sandbox_profile_end_to_end(compose: dict[str, Any]) -> None:
    stack = _stack(compose)  # no ${...:?} left unset
    worker_env = stack["worker"]["environment"]
    settings = Settings(
        _env_file=None, **{k: v for k, v in worker_env.items() if k != "PGPASSWORD"}
    )
    assert settings.lago_api_url == "http://sandbox:8765"
    host_port = _command(stack["sandbox"])
    assert "--host 0.0.0.0 --port 8765" in host_port  # the URL's host is the service's name
    assert stack["sandbox"]["environment"]["SANDBOX_API_KEY"] == (
        settings.lago_api_key.get_secret_value()
    )
    assert worker_env["PGPASSWORD"] == stack["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert settings.broker_is_redis


def test_any_password_works_without_url_encoding(compose: dict[str, Any]) -> None:
    password = "p@ss:w/rd?#%&=+ é"
    stack = _stack(compose, POSTGRES_PASSWORD=password)
    env = stack["worker"]["environment"]
    url = make_url(env["DUNNING_DATABASE_URL"])
    assert (url.username, url.password, url.host, url.database) == (
        "dunning",
        None,
        "postgres",
        "dunning",
    )
    assert env["PGPASSWORD"] == password == stack["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_a_real_lago_url_and_key_replace_the_sandbox(compose: dict[str, Any]) -> None:
    stack = _stack(compose, LAGO_API_URL="https://api.getlago.com", LAGO_API_KEY="live-key")
    assert stack["serve"]["environment"]["LAGO_API_URL"] == "https://api.getlago.com"
    assert stack["worker"]["environment"]["LAGO_API_KEY"] == "live-key"


@pytest.mark.parametrize("variable", ["LAGO_API_KEY", "POSTGRES_PASSWORD"])
def test_an_empty_required_variable_stops_compose_with_its_message(
    compose: dict[str, Any], variable: str
) -> None:
    with pytest.raises(MissingVariableError, match=variable):
        _stack(compose, **{variable: ""})

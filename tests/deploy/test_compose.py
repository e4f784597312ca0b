"""docker-compose.yml: valid against the Compose specification and shaped as documented."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from sqlalchemy.engine import make_url

from config.settings import Settings, load_settings
from tests.deploy.conftest import ROOT
from worker.celery import celery_config, create_app

APP_SERVICES = ("migrate", "worker", "beat", "serve", "sandbox", "flower")
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?+][^}]*)?\}")


def _flat_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _flat_strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _flat_strings(value)]
    return []


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_valid_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "tests/deploy/compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "tests/deploy/compose-spec.json").read_text())
    broken = {**compose, "services": {**compose["services"], "worker": {"imagee": "x"}}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert set(services) == {
        "postgres", "redis", "migrate", "worker", "beat", "serve", "sandbox", "flower",
        "prometheus", "grafana",
    }  # fmt: skip


def test_postgres_is_checked_with_pg_isready(services: dict[str, Any]) -> None:
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_redis_never_evicts_and_persists(services: dict[str, Any]) -> None:
    redis = services["redis"]
    command = _command(redis)
    assert "--maxmemory-policy noeviction" in command
    assert "--appendonly yes" in command
    assert "ping" in " ".join(redis["healthcheck"]["test"])


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    missing = [n for n, svc in services.items() if n != "migrate" and "healthcheck" not in svc]
    assert missing == []


def test_migrate_is_a_one_shot_upgrade_after_postgres(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert _command(migrate) == "dunning db upgrade"
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["worker", "beat", "serve"])
def test_worker_and_beat_wait_for_healthy_stores_and_the_migration(
    services: dict[str, Any], name: str
) -> None:
    depends = services[name]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_exactly_one_beat_and_no_embedded_beat_in_workers(services: dict[str, Any]) -> None:
    beat = services["beat"]
    assert _command(beat).startswith("celery -A worker --quiet beat")
    assert beat["deploy"]["replicas"] == 1
    beats = [n for n, svc in services.items() if "command" in svc and " beat" in _command(svc)]
    assert beats == ["beat"]
    worker_args = services["worker"]["command"]
    assert "-B" not in worker_args
    assert "--beat" not in worker_args


def test_beat_health_watches_the_redbeat_lock(services: dict[str, Any]) -> None:
    from redbeat.schedulers import RedBeatConfig

    app = create_app(
        load_settings(broker_url="redis://redis:6379/0"), cron=None, set_as_current=False
    )
    lock_key = RedBeatConfig(app).lock_key
    probe = " ".join(services["beat"]["healthcheck"]["test"])
    assert f"exists('{lock_key}')" in probe


def test_worker_gets_time_for_a_warm_shutdown(services: dict[str, Any]) -> None:
    conf = celery_config(load_settings(broker_url="redis://redis:6379/0"), cron=None)
    worker = services["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    grace = int(str(worker["stop_grace_period"]).removesuffix("s"))
    assert grace > conf["worker_soft_shutdown_timeout"]


def test_optional_services_sit_behind_profiles(services: dict[str, Any]) -> None:
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    core = [name for name, svc in services.items() if "profiles" in svc]
    assert sorted(core) == ["flower", "grafana", "prometheus", "sandbox"]


def test_application_services_share_one_image_built_from_the_dockerfile(
    services: dict[str, Any],
) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    builds = {json.dumps(services[name]["build"], sort_keys=True) for name in APP_SERVICES}
    assert len(images) == 1
    assert builds == {json.dumps({"context": ".", "dockerfile": "Dockerfile"}, sort_keys=True)}


@pytest.mark.parametrize("variable", ["LAGO_API_KEY", "POSTGRES_PASSWORD"])
def test_required_variables_fail_fast_with_a_message(
    compose: dict[str, Any], variable: str
) -> None:
    text = " ".join(_flat_strings(compose))
    assert re.search(r"\$\{" + variable + r":\?[^}]+\}", text), variable


def test_an_empty_lago_url_means_the_bundled_sandbox(services: dict[str, Any]) -> None:
    assert (
        services["worker"]["environment"]["LAGO_API_URL"] == "${LAGO_API_URL:-http://sandbox:8765}"
    )
    assert "--port 8765" in _command(services["sandbox"])


def test_no_literal_secrets(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        env = svc.get("environment", {})
        for key, value in env.items():
            if re.search(r"KEY|PASSWORD|SECRET|TOKEN", key):
                assert str(value).startswith("${"), f"{name}.{key} is a literal"
        for value in _flat_strings(env):
            if "://" in value and "@" in value:
                assert make_url(value).password is None, f"{name}: a password in a URL"


def test_application_environment_names_real_settings(services: dict[str, Any]) -> None:
    known = {
        field.validation_alias
        for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, str)
    }
    env = services["worker"]["environment"]
    assert set(env) - {"PGPASSWORD"} <= known  # PGPASSWORD: read by PostgreSQL's client
    required = {"DUNNING_DATABASE_URL", "DUNNING_BROKER_URL", "LAGO_API_URL", "LAGO_API_KEY"}
    assert required <= set(env)
    assert env["DUNNING_BROKER_URL"].startswith("redis://redis:")
    assert env["DUNNING_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_every_interpolated_variable_is_documented_in_env_example(compose: dict[str, Any]) -> None:
    documented = (ROOT / ".env.example").read_text()
    used = {m.group(1) for s in _flat_strings(compose) for m in INTERPOLATION.finditer(s)}
    assert used
    missing = sorted(v for v in used if not re.search(rf"^#? ?{v}=", documented, re.MULTILINE))
    assert missing == []


def test_published_ports_bind_loopback_only(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} publicly"

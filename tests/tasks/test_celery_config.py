"""The Celery bootstrap: settings for both broker shapes, the beat schedule, the tick slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from config import Settings, load_settings
from tasks.slots import tick_slot
from worker.celery import (
    RECONCILE_TASK,
    SEND_TASK,
    SWEEP_TASK,
    ScheduleError,
    celery_config,
    create_app,
    crontab_from_cron,
)

REDIS_URL = "redis://127.0.0.1:6379/15"


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=tmp_path, **overrides)


def test_embedded_default_uses_filesystem_folders_under_the_data_dir(tmp_path: Path) -> None:
    conf = celery_config(_settings(tmp_path), cron="*/15 * * * *")
    assert conf["broker_url"] == "filesystem://"
    options = conf["broker_transport_options"]
    folders = [Path(options[k]) for k in ("data_folder_in", "data_folder_out", "processed_folder")]
    folders.append(Path(options["control_folder"]))
    for folder in folders:
        assert folder.is_dir()
        assert folder.is_relative_to(tmp_path.resolve() / "broker")
    # one queue folder: producers and consumers on one host must meet
    assert options["data_folder_in"] == options["data_folder_out"]
    assert conf["beat_schedule_filename"] == str(tmp_path.resolve() / "celerybeat-schedule")
    assert "beat_scheduler" not in conf
    assert conf["worker_send_task_events"] is False


def test_reliability_settings_hold_for_both_brokers(tmp_path: Path) -> None:
    for broker in (None, REDIS_URL):
        conf = celery_config(_settings(tmp_path, broker_url=broker), cron="* * * * *")
        assert conf["task_acks_late"] is True
        assert conf["task_reject_on_worker_lost"] is True
        assert conf["worker_prefetch_multiplier"] == 1
        assert conf["task_ignore_result"] is True
        assert conf["result_backend"] is None
        assert conf["accept_content"] == ["json"]
        assert conf["task_serializer"] == "json"
        assert conf["timezone"] == "UTC"
        assert conf["worker_hijack_root_logger"] is False
        assert conf["worker_soft_shutdown_timeout"] > 0
        assert conf["task_soft_time_limit"] < conf["task_time_limit"]


def test_redis_broker_gets_redbeat_and_transport_safety(tmp_path: Path) -> None:
    conf = celery_config(_settings(tmp_path, broker_url=REDIS_URL), cron="*/5 * * * *")
    assert conf["beat_scheduler"] == "redbeat.RedBeatScheduler"
    assert conf["redbeat_redis_url"] == REDIS_URL
    assert conf["redbeat_lock_timeout"] >= 5 * conf["beat_max_loop_interval"]
    options = conf["broker_transport_options"]
    assert options["global_keyprefix"]
    assert options["socket_timeout"] > 1  # above the BRPOP timeout
    assert options["health_check_interval"] > 0
    assert options["visibility_timeout"] == conf["visibility_timeout"]
    app = create_app(
        _settings(tmp_path, broker_url=REDIS_URL), cron="*/5 * * * *", set_as_current=False
    )
    longest = max(a["time_limit"] for a in app.conf.task_annotations.values())
    assert options["visibility_timeout"] >= 3 * longest
    assert conf["worker_send_task_events"] is True


def test_send_time_limit_stays_inside_the_default_lease(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path), cron="* * * * *", set_as_current=False)
    limits = app.conf.task_annotations
    assert set(limits) == {SWEEP_TASK, SEND_TASK, RECONCILE_TASK}
    assert limits[SEND_TASK]["time_limit"] < load_settings().lease_seconds
    for annotation in limits.values():
        assert annotation["soft_time_limit"] < annotation["time_limit"]


def test_beat_runs_the_sweep_on_the_policy_cron_and_reconcile_on_its_own(tmp_path: Path) -> None:
    conf = celery_config(_settings(tmp_path), cron="0 9 * * 1-5")
    schedule = conf["beat_schedule"]
    sweep = schedule["dunning-sweep"]
    assert sweep["task"] == SWEEP_TASK
    assert sweep["kwargs"] == {"trigger": "beat"}
    assert sweep["schedule"].hour == {9}
    assert sweep["schedule"].minute == {0}
    assert sweep["schedule"].day_of_week == {1, 2, 3, 4, 5}
    reconcile = schedule["dunning-reconcile"]
    assert reconcile["task"] == RECONCILE_TASK
    assert isinstance(reconcile["schedule"], timedelta)


CRONS = ["*/15 * * * *", "0 9 * * 1-5", "30 8,17 * * *", "5 */6 1 * *", "0 0 * 1-3 0", "* * * * *"]


@settings(max_examples=100, deadline=None)
@given(
    cron=st.sampled_from(CRONS),
    moment=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
)
def test_celery_crontab_fires_exactly_when_the_cron_matches(cron: str, moment: datetime) -> None:
    minute = moment.replace(second=0, microsecond=0, tzinfo=UTC)
    entry = crontab_from_cron(cron)
    celery_fires = (
        minute.minute in entry.minute
        and minute.hour in entry.hour
        and minute.day in entry.day_of_month
        and minute.month in entry.month_of_year
        and minute.isoweekday() % 7 in entry.day_of_week
    )
    assert celery_fires == croniter.match(cron, minute)


def test_a_cron_celery_cannot_express_is_a_one_line_error() -> None:
    with pytest.raises(ScheduleError, match=r"cannot be scheduled by Celery beat.*0 = Sunday"):
        crontab_from_cron("0 9 * * 7")
    with pytest.raises(ScheduleError, match="expected 5 fields"):
        crontab_from_cron("0 9 * *")


@pytest.mark.parametrize(
    ("cron", "now", "slot"),
    [
        ("*/15 * * * *", datetime(2026, 11, 22, 0, 30, tzinfo=UTC), "2026-11-22T00:30Z"),
        ("*/15 * * * *", datetime(2026, 11, 22, 0, 44, 59, 999, tzinfo=UTC), "2026-11-22T00:30Z"),
        ("*/15 * * * *", datetime(2026, 11, 22, 0, 45, 0, 1, tzinfo=UTC), "2026-11-22T00:45Z"),
        # Sunday: the last weekday 09:00 firing was Friday's
        ("0 9 * * 1-5", datetime(2026, 11, 22, 12, 0, tzinfo=UTC), "2026-11-20T09:00Z"),
        # another timezone, same instant
        (
            "0 * * * *",
            datetime(2026, 11, 22, 10, 5, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris")),
            "2026-11-22T10:00Z",
        ),
    ],
)
def test_tick_slot_is_the_latest_firing_at_or_before_now(
    cron: str, now: datetime, slot: str
) -> None:
    assert tick_slot(cron, now) == slot


@settings(max_examples=100, deadline=None)
@given(
    cron=st.sampled_from(CRONS),
    moment=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
    delay=st.integers(min_value=0, max_value=59),
)
def test_fires_of_one_slot_agree_and_the_slot_matches_the_cron(
    cron: str, moment: datetime, delay: int
) -> None:
    fired_at = moment.replace(tzinfo=UTC)
    slot = tick_slot(cron, fired_at)
    slot_time = datetime.strptime(slot, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    assert slot_time <= fired_at
    assert croniter.match(cron, slot_time)
    # no firing strictly between the slot and now
    following = croniter(cron, slot_time).get_next(datetime)
    assert following > fired_at
    # a second beat firing the same slot a little later (still before the next firing)
    later = min(fired_at + timedelta(seconds=delay), following - timedelta(microseconds=1))
    assert tick_slot(cron, later) == slot


def test_tick_slot_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tick_slot("* * * * *", datetime(2026, 1, 1))

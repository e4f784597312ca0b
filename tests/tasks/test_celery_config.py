"""The Celery bootstrap: settings for both broker shapes, the beat schedule, the tick slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from config import Settings, load_settings
from config.cron import MONTH_NAMES, WEEKDAY_NAMES, parse_cron
from config.policies import PolicyFileError, parse_policies
from tasks.slots import tick_slot
from worker.celery import (
    RECONCILE_TASK,
    SEND_BATCH_TASK,
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
    assert set(limits) == {SWEEP_TASK, SEND_TASK, SEND_BATCH_TASK, RECONCILE_TASK}
    assert limits[SEND_TASK]["time_limit"] < load_settings().lease_seconds
    assert limits[SEND_BATCH_TASK]["time_limit"] < load_settings().lease_seconds
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


# The four the policy checker used to accept and beat refused, and others of their kind: the
# loader and beat share one parser, so each is refused by both, in one line.
REFUSED_CRONS = [
    "0 0 31 2 *",
    "0 0 * * 7",
    "0 0 L * *",
    "0 0 * * 5#3",
    "0 0 1 * 1",
    "0 0 * * fri-mon",
    "5/15 * * * *",
    "@daily",
    "0 9 * *",
]


@pytest.mark.parametrize("cron", REFUSED_CRONS)
def test_a_cron_the_scheduler_cannot_run_is_refused_by_beat_and_by_the_policy_loader(
    cron: str,
) -> None:
    with pytest.raises(ScheduleError) as scheduled:
        crontab_from_cron(cron)
    assert str(scheduled.value).startswith(f"cron {cron!r} cannot be scheduled by Celery beat: ")
    assert "\n" not in str(scheduled.value)
    document = (
        f'version: 1\nschedule: {{cron: "{cron}"}}\n'
        "policies:\n  - {name: p, min_overdue_cents: {USD: 1}}\n"
    )
    with pytest.raises(PolicyFileError) as loaded:
        parse_policies(document, source="policies.yaml")
    assert str(loaded.value).startswith(f"policies.yaml: schedule.cron: invalid cron {cron!r}: ")


def test_a_cron_celery_cannot_express_is_a_one_line_error() -> None:
    with pytest.raises(ScheduleError, match=r"cannot be scheduled by Celery beat.*0 for Sunday"):
        crontab_from_cron("0 9 * * 7")
    with pytest.raises(ScheduleError, match="expected 5 fields"):
        crontab_from_cron("0 9 * *")


def _item(
    low: int, high: int, names: tuple[str, ...] = (), base: int = 0
) -> st.SearchStrategy[str]:
    """One cron list item in the accepted language, numbers or (when given) names."""

    def word(value: int) -> st.SearchStrategy[str]:
        texts = [str(value)]
        if names:
            texts.append(names[value - base])
            texts.append(names[value - base].upper())
        return st.sampled_from(texts)

    number = st.integers(low, high)
    step = st.integers(1, high - low + 1)
    single = number.flatmap(word)
    span = (
        st.tuples(number, number)
        .map(sorted)
        .flatmap(lambda ends: st.tuples(word(ends[0]), word(ends[1])).map("-".join))
    )
    return st.one_of(
        st.just("*"),
        step.map(lambda n: f"*/{n}"),
        single,
        span,
        st.tuples(span, step).map(lambda pair: f"{pair[0]}/{pair[1]}"),
    )


def _field(item: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(item, min_size=1, max_size=3).map(",".join)


@st.composite
def accepted_crons(draw: st.DrawFn) -> str:
    minute = draw(_field(_item(0, 59)))
    hour = draw(_field(_item(0, 23)))
    month = draw(_field(_item(1, 12, MONTH_NAMES, base=1)))
    if draw(st.booleans()):
        day, weekday = draw(_field(_item(1, 28))), "*"
    else:
        day, weekday = "*", draw(_field(_item(0, 6, WEEKDAY_NAMES)))
    return f"{minute} {hour} {day} {month} {weekday}"


def _celery_fires(entry: crontab, at: datetime) -> bool:
    return (
        at.minute in entry.minute
        and at.hour in entry.hour
        and at.day in entry.day_of_month
        and at.month in entry.month_of_year
        and at.isoweekday() % 7 in entry.day_of_week
    )


@settings(max_examples=300, deadline=None)
@given(
    cron=accepted_crons(),
    moment=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
)
def test_beat_runs_exactly_what_the_loader_accepted(cron: str, moment: datetime) -> None:
    """The translation is exact: beat's crontab holds our parser's sets, and Celery reading
    the same text itself gets the same sets."""
    parsed = parse_cron(cron)
    entry = crontab_from_cron(cron)
    minute, hour, day, month, weekday = cron.split()
    own_reading = crontab(
        minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday
    )
    for celery in (entry, own_reading):
        assert celery.minute == parsed.minutes
        assert celery.hour == parsed.hours
        assert celery.day_of_month == parsed.days
        assert celery.month_of_year == parsed.months
        assert celery.day_of_week == parsed.weekdays
    at = moment.replace(second=0, microsecond=0, tzinfo=UTC)
    assert parsed.matches(at) == _celery_fires(entry, at)


@settings(max_examples=150, deadline=None)
@given(
    cron=accepted_crons(),
    moment=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
)
def test_the_tick_slot_is_a_firing_of_beat_and_beat_fires_next_after_now(
    cron: str, moment: datetime
) -> None:
    """The slot is the latest firing at or before now by beat's own arithmetic: it matches
    beat's crontab, and beat's next run after it is later than now."""
    at = moment.replace(tzinfo=UTC)
    slot = datetime.strptime(tick_slot(cron, at), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    entry = crontab_from_cron(cron)
    assert slot <= at
    assert _celery_fires(entry, slot)
    last, delta, _ = entry.remaining_delta(slot)
    following = last + delta
    assert following > at
    assert parse_cron(cron).matches(following)


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

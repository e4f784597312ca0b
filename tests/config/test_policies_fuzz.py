"""Whatever the policy file holds, loading gives a PolicySet or a one-line PolicyFileError."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.policies import PolicyFileError, PolicySet, parse_policies

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["USD", "eur", "XYZ", "FR", "mon", "Europe/Paris", "*/5 * * * *", "stop",
                     "webhook", "https://h.example/x", "off", "2024-13-45"]),
)  # fmt: skip
KEYS = st.sampled_from(
    ["version", "schedule", "cron", "policies", "name", "match", "exclude", "metadata",
     "min_overdue_cents", "grace_days", "days_between_attempts", "max_attempts",
     "send_window", "start_hour", "end_hour", "weekdays", "fallback_timezone", "email",
     "on_exhausted", "action", "url", "currencies", "countries", "USD", "EUR", "bogus"]
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=25,
)
POLICY = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=8) | VALUES},
    optional={
        "match": VALUES,
        "exclude": VALUES,
        "min_overdue_cents": st.dictionaries(
            st.sampled_from(["USD", "EUR", "usd", "XYZ"]), st.integers(-5, 10**6) | VALUES
        ),
        "grace_days": st.integers(-2, 10**6) | VALUES,
        "days_between_attempts": st.integers(-2, 10**6),
        "max_attempts": st.integers(-1, 5) | st.dictionaries(st.sampled_from(["USD", "EUR"]),
                                                            st.integers(-1, 5)),
        "send_window": st.fixed_dictionaries(
            {"start_hour": st.integers(-1, 25), "end_hour": st.integers(-1, 25)},
            optional={"weekdays": st.lists(st.sampled_from(["mon", "sun", "x"])),
                      "fallback_timezone": st.sampled_from(["UTC", "Nope/Zone", ""])},
        ),
        "on_exhausted": VALUES,
        "email": SCALARS,
    },
)  # fmt: skip
DOCUMENTS = st.one_of(
    VALUES,
    st.fixed_dictionaries(
        {"version": st.just(1) | SCALARS, "policies": st.lists(POLICY, max_size=3) | VALUES},
        optional={"schedule": st.fixed_dictionaries({"cron": SCALARS}) | VALUES},
    ),
)


def assert_loads_or_explains(data: bytes | str) -> None:
    try:
        result = parse_policies(data, source="fuzz.yaml")
    except PolicyFileError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml")
        assert "\n" not in message
    else:
        assert isinstance(result, PolicySet)
        assert result.policies


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_any_structure(document: object) -> None:
    assert_loads_or_explains(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"%@`#,? \n\tab1")), max_size=60))
def test_any_yaml_text(text: str) -> None:
    assert_loads_or_explains(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes(data: bytes) -> None:
    assert_loads_or_explains(data)

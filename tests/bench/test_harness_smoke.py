"""The harness pieces run on tiny inputs (no timing, no subprocesses)."""

from __future__ import annotations

import json

import pytest

from bench.memory_worker import base_invoices, page_bodies, run
from bench.policy_file import GENERATED_CURRENCIES, policy_yaml
from config.policies import parse_policies
from sandbox.generator import _REGIONS


def test_the_bench_policy_loads_and_covers_every_generated_currency() -> None:
    policies = parse_policies(policy_yaml())
    (policy,) = policies.policies
    assert {region.currency for region in _REGIONS} <= set(GENERATED_CURRENCIES)
    assert all(policy.threshold_for(currency) == 0 for currency in GENERATED_CURRENCIES)
    assert policy.send_window is None


def test_the_page_stream_yields_exactly_the_requested_invoices_with_unique_ids() -> None:
    base = base_invoices()
    bodies = [json.loads(body) for body in page_bodies(250, base)]
    rows = [row for body in bodies for row in body["invoices"]]
    assert [len(body["invoices"]) for body in bodies] == [100, 100, 50]
    assert len({row["lago_id"] for row in rows}) == 250
    assert bodies[0]["meta"]["total_pages"] == 3


def test_the_memory_worker_groups_and_decides_a_small_stream() -> None:
    result = run(300)
    assert result["invoices"] == 300
    assert 0 < result["groups"] <= 300
    assert result["decisions"] == result["groups"]


def test_the_sustained_rate_is_the_best_span_of_accepted_calls() -> None:
    from bench.rate_limited import best_sustained_rate

    # 10 idle seconds (listing, deciding), then 100 s at 45 accepted and 1 refused per second.
    samples = [(float(t), 0, 0) for t in range(10)]
    samples += [(float(10 + t), 46 * t, t) for t in range(1, 101)]
    assert best_sustained_rate(samples, 60.0) == 45.0
    assert best_sustained_rate(samples[:50], 60.0) is None  # shorter than the span


def test_a_send_process_count_out_of_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.run import main

    with pytest.raises(SystemExit) as exited:
        main(["--only", "sweep", "--send-processes", "0"])
    assert exited.value.code == 2
    assert "--send-processes must be between 1 and 16" in capsys.readouterr().err

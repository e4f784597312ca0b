"""Holdout statistics: interval methods against published values, episodes from the ledger,
and the comparison in `dunning report`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from worker.services.holdout_stats import (
    Episode,
    compare,
    holdout_comparison,
    mean_ci,
    newcombe,
    wilson,
)
from worker.services.report import build_report, holdout_cells
from worker.services.report_html import render_html
from worker.store import holdouts, intents
from worker.store.db import write_tx
from worker.store.models import PaymentRequestIntent

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def test_wilson_matches_the_textbook_values() -> None:
    low, high = wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 20)[0] == 0.0


def test_newcombe_matches_newcombe_1998_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80.
    difference, (low, high) = newcombe((56, 70), (48, 80))
    assert round(difference, 4) == 0.2
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_mean_ci_needs_two_values() -> None:
    assert mean_ci([3.0]) is None
    mean, (low, high) = mean_ci([2.0, 4.0, 6.0])  # type: ignore[misc]
    assert mean == 4.0
    assert low == pytest.approx(4.0 - 1.959964 * 2 / 3**0.5)
    assert high == pytest.approx(4.0 + 1.959964 * 2 / 3**0.5)


def test_compare_reports_both_arms_and_the_difference() -> None:
    dunned = [Episode(1000, 1000, True, float(d)) for d in (2, 3, 4, 5)] + [
        Episode(1000, 0, False, None)
    ]
    held = [Episode(1000, 1000, True, float(d)) for d in (9, 12)] + [
        Episode(1000, 0, False, None) for _ in range(3)
    ]
    result = compare("p", dunned, held)
    assert (result.dunned.paid_share, result.held_out.paid_share) == (0.8, 0.4)
    assert result.paid_share_difference == 0.4
    assert result.days_difference == pytest.approx(3.5 - 10.5)
    assert result.days_difference_ci is not None
    assert result.days_difference_ci[0] < -7 < result.days_difference_ci[1]
    rows = holdout_cells(result)
    assert [row[1] for row in rows] == ["dunned", "held out", "difference"]
    assert rows[2][4].startswith("+40.0 pts")


def _sent(session, customer: str, attempt: int, sent_at: datetime, *, paid_at=None) -> None:
    intent_id = intents.add_intent(
        session, run_id=None, external_customer_id=customer, currency="EUR",
        billing_entity_code=None, invoice_ids=[f"{customer}-{attempt}"], amount_cents=1000,
        email=None, policy="measured", attempt_number=attempt, now=sent_at,
    )  # fmt: skip
    row = session.get(PaymentRequestIntent, intent_id)
    row.status, row.sent_at = "sent", sent_at
    if paid_at is not None:
        row.outcome, row.recovered_cents, row.resolved_at = "paid", 1000, paid_at
    else:
        row.outcome = "open"


def test_the_report_compares_dunned_and_held_out_groups_from_the_ledger(engine: Engine) -> None:
    with write_tx(engine) as session:
        _sent(session, "cus_a", 1, T0, paid_at=T0 + timedelta(days=2))
        _sent(session, "cus_b", 1, T0)
        _sent(session, "cus_b", 2, T0 + timedelta(days=3), paid_at=T0 + timedelta(days=6))
        _sent(session, "cus_c", 1, T0)
        holdouts.enter_holdouts(
            session,
            entries=[
                holdouts.NewHoldout(
                    f"cus_h{n}", "EUR", None, "measured", None, "h", (f"i{n}",), 1000
                )
                for n in range(3)
            ],
            now=T0,
        )
    with write_tx(engine) as session:
        first = holdouts.open_entries(session, limit=1)[0]
        holdouts.record_holdout_outcome(
            session, entry_id=first.id, outcome="paid", recovered_cents=1000, final=True,
            now=T0 + timedelta(days=10),
        )  # fmt: skip
    (result,) = holdout_comparison(engine, since=T0 - timedelta(days=1))
    assert (result.dunned.episodes, result.dunned.paid) == (3, 2)  # cus_b's two attempts: one
    assert result.dunned.median_days_to_pay == 4.0  # 2 days and 6 days after attempt 1
    assert (result.held_out.episodes, result.held_out.paid) == (3, 1)
    assert result.held_out.mean_days_to_pay == 10.0
    report = build_report(engine, since=None, now=T0 + timedelta(days=20))
    assert report.to_json()["holdouts"][0]["policy"] == "measured"
    assert 'id="holdouts"' in render_html(report)


def test_report_rows_split_by_policy_version(engine: Engine) -> None:
    with write_tx(engine) as session:
        for customer, version in (("cus_v1", "1"), ("cus_v2", "2"), ("cus_v2b", "2")):
            intent_id = intents.add_intent(
                session, run_id=None, external_customer_id=customer, currency="EUR",
                billing_entity_code=None, invoice_ids=[customer], amount_cents=500, email=None,
                policy="p", attempt_number=1, now=T0, policy_version=version, policy_hash="h",
            )  # fmt: skip
            row = session.get(PaymentRequestIntent, intent_id)
            row.status, row.sent_at = "sent", T0
    report = build_report(engine, since=None, now=T0)
    assert [(r.policy, r.version, r.asked) for r in report.recovery.rows] == [
        ("p", "1", 1),
        ("p", "2", 2),
    ]

"""Recovery figures against a small scenario whose numbers are worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.fixtures.ledger_rows import T0, add_intent_row
from worker.read import reading
from worker.read.recovery import recovered_so_far, recovery

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def scenario(engine: Engine) -> Engine:
    # standard / USD / attempt 1: asked 1000+3000+2000+4000 = 10000
    add_intent_row(engine, amount=1000, outcome="paid", recovered=1000, paid_after=2 * H)
    add_intent_row(engine, amount=3000, outcome="paid", recovered=3000, paid_after=6 * H)
    add_intent_row(engine, amount=2000, outcome="partially_paid", recovered=500, paid_after=3 * H)
    add_intent_row(engine, amount=4000, outcome="open")
    # standard / USD / attempt 2: one request of 4000, paid after a day (Nov 3)
    add_intent_row(
        engine, attempt=2, amount=4000, outcome="paid", recovered=4000, paid_after=24 * H
    )
    # standard / EUR / attempt 1: failed
    add_intent_row(engine, currency="EUR", amount=5000, outcome="failed")
    # vip / USD / attempt 1 (adopted counts too): paid after 1 h, 2 h and 10 h
    for amount, after, status in ((100, H, "adopted"), (200, 2 * H, "sent"), (300, 10 * H, "sent")):
        add_intent_row(
            engine,
            policy="vip",
            amount=amount,
            outcome="paid",
            recovered=amount,
            paid_after=after,
            status=status,
        )
    # Not reported with --since: sent before it; never: pending, refused.
    add_intent_row(
        engine,
        policy="vip",
        amount=999,
        outcome="paid",
        recovered=999,
        paid_after=H,
        sent_at=T0 - timedelta(days=10),
    )
    add_intent_row(engine, policy="vip", amount=777, status="pending")
    add_intent_row(engine, policy="vip", amount=555, status="refused")
    return engine


def test_figures_per_policy_currency_and_attempt(scenario: Engine) -> None:
    with reading(scenario) as session:
        result = recovery(session, since=SINCE)
    rows = {(r.policy, r.currency, r.attempt_number): r for r in result.rows}
    assert set(rows) == {
        ("standard", "EUR", 1),
        ("standard", "USD", 1),
        ("standard", "USD", 2),
        ("vip", "USD", 1),
    }
    usd1 = rows["standard", "USD", 1]
    assert (usd1.asked, usd1.asked_cents, usd1.paid, usd1.partially_paid) == (4, 10000, 2, 1)
    assert usd1.recovered_cents == 4500  # 1000 + 3000 + 500
    assert usd1.recovery_rate == 0.45
    assert usd1.median_seconds_to_pay == 4 * 3600  # median of 2 h and 6 h
    assert usd1.median_days_to_pay == pytest.approx(4 / 24)

    usd2 = rows["standard", "USD", 2]
    assert (usd2.asked, usd2.paid, usd2.recovered_cents, usd2.recovery_rate) == (1, 1, 4000, 1.0)
    assert usd2.median_days_to_pay == 1.0

    eur = rows["standard", "EUR", 1]
    assert (eur.asked, eur.paid, eur.recovered_cents, eur.recovery_rate) == (1, 0, 0, 0.0)
    assert eur.median_seconds_to_pay is None

    vip = rows["vip", "USD", 1]
    assert (vip.asked, vip.asked_cents, vip.paid, vip.recovered_cents) == (3, 600, 3, 600)
    assert vip.median_seconds_to_pay == 2 * 3600

    assert result.totals() == {"EUR": (5000, 0), "USD": (14600, 9100)}


def test_money_in_per_day_and_payment_by_payment(scenario: Engine) -> None:
    with reading(scenario) as session:
        result = recovery(session, since=SINCE)
    daily = {(d.day.isoformat(), d.currency): d.recovered_cents for d in result.daily}
    # Nov 2: 1000 + 3000 + 500 (partial, last update) + 100 + 200 + 300 (vip, 20:00) = 5100
    # Nov 3: 4000 (attempt 2, after 24 h)
    assert daily == {("2026-11-02", "USD"): 5100, ("2026-11-03", "USD"): 4000}
    assert [p.recovered_cents for p in result.payments] == [100, 1000, 200, 500, 3000, 300, 4000]
    assert [p.at for p in result.payments] == sorted(p.at for p in result.payments)


def test_without_since_everything_sent_counts(scenario: Engine) -> None:
    with reading(scenario) as session:
        result = recovery(session, since=None)
    vip = next(r for r in result.rows if r.policy == "vip")
    assert (vip.asked, vip.recovered_cents) == (4, 1599)


def test_recovered_so_far_is_one_aggregate_per_currency(scenario: Engine) -> None:
    with reading(scenario) as session:
        totals = {item.currency: item for item in recovered_so_far(session)}
    assert set(totals) == {"EUR", "USD"}
    usd = totals["USD"]
    # every sent/adopted USD request, --since or not: 4 + 1 + 3 + the old vip one
    assert (usd.asked, usd.paid, usd.asked_cents, usd.recovered_cents) == (9, 7, 15599, 10099)
    assert (totals["EUR"].asked, totals["EUR"].recovered_cents) == (1, 0)

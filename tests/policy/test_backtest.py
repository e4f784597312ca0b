"""The backtest replay and its figures on hand-made history (pure, ticks given)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tests.policy.builders import customer, policy_set
from worker.policy.backtest import HistoricalInvoice, replay
from worker.policy.backtest_figures import difference, figures

DAY = timedelta(days=1)
START = datetime(2026, 3, 1, tzinfo=UTC)
TICKS = [START + timedelta(hours=h) for h in range(24 * 60)]  # hourly for 60 days


def inv(
    lago_id: str,
    *,
    who: str = "cus_1",
    currency: str = "EUR",
    due: date = date(2026, 3, 1),
    cents: int = 10_000,
    paid_at: datetime | None = None,
) -> HistoricalInvoice:
    payments = ((paid_at, cents),) if paid_at else ()
    return HistoricalInvoice(
        lago_id=lago_id, number=lago_id, customer=customer(who, timezone="UTC"),
        currency=currency, billing_entity_code=None, payment_due_date=due,
        issued_at=datetime(2026, 2, 1, tzinfo=UTC), due_cents=cents, payments=payments,
        paid_at=paid_at,
    )  # fmt: skip


GAP = policy_set(
    "  - name: gap\n    min_overdue_cents: {EUR: 100, USD: 100}\n"
    "    days_between_attempts: 7\n    max_attempts: 3\n"
)


def test_an_unpaid_invoice_is_touched_on_its_schedule_up_to_the_limit() -> None:
    result = replay(GAP, [inv("a")], TICKS)
    assert [t.at for t in result.touches] == [
        datetime(2026, 3, 2, tzinfo=UTC),
        datetime(2026, 3, 9, 1, tzinfo=UTC),  # strictly more than 7 days: the next hourly tick
        datetime(2026, 3, 16, 2, tzinfo=UTC),
    ]
    assert [t.attempt_number for t in result.touches] == [1, 2, 3]


def test_a_payment_stops_the_touches_and_resets_the_cycle_for_new_invoices() -> None:
    paid = datetime(2026, 3, 4, 10, tzinfo=UTC)
    later = inv("b", due=date(2026, 3, 20))
    result = replay(GAP, [inv("a", paid_at=paid), later], TICKS)
    assert [(t.at, t.invoice_ids, t.attempt_number) for t in result.touches][:2] == [
        (datetime(2026, 3, 2, tzinfo=UTC), ("a",), 1),
        (datetime(2026, 3, 21, tzinfo=UTC), ("b",), 1),
    ]


def test_a_customer_in_three_currencies_is_touched_once_under_a_cap() -> None:
    capped = policy_set(
        "  - name: cap\n    min_overdue_cents: {EUR: 100, USD: 100, GBP: 100}\n"
        "    max_attempts: 1\n    contact_cap: {max_requests: 1, per_days: 5}\n"
    )
    history = [inv(f"x{c}", currency=c) for c in ("EUR", "USD", "GBP")]
    touches = replay(capped, history, TICKS).touches
    assert [t.at.date() for t in touches] == [date(2026, 3, 2), date(2026, 3, 7), date(2026, 3, 12)]


def test_held_out_customers_are_never_touched() -> None:
    text = (
        "  - name: p\n    min_overdue_cents: {EUR: 100}\n    holdout_percent: 50\nholdout_salt: s\n"
    )
    history = [inv(f"i{n}", who=f"cus_{n}") for n in range(40)]
    result = replay(policy_set(text), history, TICKS)
    touched = {t.external_customer_id for t in result.touches}
    assert len(touched) + len(result.held_out_groups) == 40
    assert 8 < len(result.held_out_groups) < 32


def test_figures_count_groups_paid_within_each_window_and_censoring() -> None:
    history = {
        "a": inv("a", paid_at=datetime(2026, 3, 6, tzinfo=UTC)),  # 4 days after the touch
        "b": inv("b", who="cus_2", paid_at=datetime(2026, 3, 22, tzinfo=UTC)),  # 20 days
        "c": inv("c", who="cus_3"),  # never
    }
    one_touch = policy_set("  - name: p\n    min_overdue_cents: {EUR: 100}\n")
    touches = replay(one_touch, history.values(), TICKS).touches
    result = figures(touches, history, history_end=datetime(2026, 3, 25, tzinfo=UTC))
    assert (result.touches, result.customers_touched) == (3, 3)
    assert result.amount_asked_cents == {"EUR": 30_000}
    assert result.paid_within == {7: 0.3333, 14: 0.3333, 30: 0.6667}
    assert result.censored_touches == 3
    other = figures(touches[:1], history, history_end=datetime(2026, 6, 1, tzinfo=UTC))
    assert difference(result, other)["touches"] == -2
    assert difference(result, other)["paid_within_days"] == {
        "7": 0.6667,
        "14": 0.6667,
        "30": 0.3333,
    }


def test_the_replay_decides_only_when_something_changed_or_came_due() -> None:
    result = replay(GAP, [inv("a")], TICKS)
    assert result.decisions < 20  # not 1,440 ticks x 1 group

"""Overdue now: a real sweep over the sandbox records its listing's ageing; the read model
gives it back per currency and bucket, matching what the sandbox itself says is overdue."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from tests.e2e.sweep_support import GENERATED_POLICY, sweep_runtime, test_settings, write_policy
from tests.fixtures.sandbox import SandboxHandle
from worker.lago.models import Invoice
from worker.read import reading
from worker.read.outstanding import overdue_now
from worker.services.collect_groups import collect_groups
from worker.services.sweep import run_sweep
from worker.store.ageing import AgeingFigure, OverdueSnapshot, bucket_for
from worker.store.db import make_engine

TODAY = date(2026, 12, 1)


def _invoice(lago_id: str, customer: str, days_overdue: int | None, due: int) -> Invoice:
    due_date = None if days_overdue is None else TODAY.toordinal() - days_overdue
    return Invoice.model_validate(
        {
            "lago_id": lago_id,
            "number": f"N-{lago_id}",
            "status": "finalized",
            "payment_status": "pending",
            "payment_overdue": True,
            "currency": "EUR",
            "total_amount_cents": due,
            "total_due_amount_cents": due,
            "payment_due_date": date.fromordinal(due_date).isoformat() if due_date else None,
            "customer": {"external_id": customer},
        }
    )


def test_bucket_edges_in_the_spool_and_in_python_agree() -> None:
    days = [None, 0, 1, 30, 31, 60, 61, 90, 91, 400]
    items = [_invoice(f"i{n}", f"c{n % 3}", d, 100 * (n + 1)) for n, d in enumerate(days)]
    with collect_groups(items, now=datetime(2026, 12, 1, 12, tzinfo=UTC)) as collected:
        figures = collected.ageing(TODAY)
        judged = dict(collected.invoices_by_reason)
    assert judged == {"eligible": 10}  # every one listed as overdue with money due
    by_bucket = {f.bucket: f for f in figures}
    # 1-30: None, 0, 1, 30 (a missing date or a day-old flag counts as recent)
    assert by_bucket["1-30"] == AgeingFigure("EUR", "1-30", 4, 3, 100 + 200 + 300 + 400)
    assert by_bucket["31-60"] == AgeingFigure("EUR", "31-60", 2, 2, 500 + 600)
    assert by_bucket["61-90"] == AgeingFigure("EUR", "61-90", 2, 2, 700 + 800)
    assert by_bucket["90+"] == AgeingFigure("EUR", "90+", 2, 2, 900 + 1000)
    assert by_bucket["all"] == AgeingFigure("EUR", "all", 10, 3, 5500)
    assert [bucket_for(d) for d in days] == [
        "1-30", "1-30", "1-30", "1-30", "31-60", "31-60", "61-90", "61-90", "90+", "90+"
    ]  # fmt: skip


def _expected(invoices: list[dict[str, Any]], today: date) -> dict[str, dict[str, Any]]:
    """currency -> bucket -> [invoices, customers, due], computed here from the raw data."""
    table: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(lambda: [0, set(), 0]))
    for invoice in invoices:
        if not (
            invoice["status"] == "finalized"
            and invoice["payment_overdue"]
            and invoice["payment_status"] in ("pending", "failed")
            and not invoice["self_billed"]
            and invoice["total_due_amount_cents"] > 0
        ):
            continue
        days = (today - date.fromisoformat(invoice["payment_due_date"])).days
        label = (
            "1-30" if days <= 30 else "31-60" if days <= 60 else "61-90" if days <= 90 else "90+"
        )
        for key in (label, "total"):
            cell = table[invoice["currency"]][key]
            cell[0] += 1
            cell[1].add(invoice["customer"]["external_id"])
            cell[2] += invoice["total_due_amount_cents"]
    return {
        currency: {label: (n, len(customers), due) for label, (n, customers, due) in rows.items()}
        for currency, rows in table.items()
    }


@pytest.fixture
def generated(sandbox: SandboxHandle) -> SandboxHandle:
    sandbox.reset(customers=40, invoices_per_customer=5, seed=11)
    return sandbox


def _sweep(db_url: str, sandbox: SandboxHandle, tmp_path: Path, **kwargs: Any) -> None:
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    with sweep_runtime(test_settings(db_url, sandbox, policy)) as rt:
        run_sweep(rt, trigger="cli", **kwargs)


def test_a_full_sweep_records_what_the_sandbox_shows_as_overdue(
    db_url: str, generated: SandboxHandle, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    _sweep(db_url, generated, tmp_path, now=now)
    expected = _expected(generated.invoices(), now.date())
    assert len(expected) >= 3  # the generator spreads customers over several currencies
    assert {label for rows in expected.values() for label in rows} > {"1-30", "total"}

    engine = make_engine(db_url)
    try:
        with reading(engine) as session:
            snapshot = overdue_now(session)
    finally:
        engine.dispose()
    assert snapshot is not None
    assert snapshot.as_of == now.date()
    found = {
        currency.currency: {
            **{
                b.label: (b.invoices, b.customers, b.due_cents)
                for b in currency.buckets
                if b.invoices
            },
            "total": (currency.invoices, currency.customers, currency.due_cents),
        }
        for currency in snapshot.currencies
    }
    assert found == expected
    # every bucket is present, in order, empty ones included
    assert all(
        [b.label for b in c.buckets] == ["1-30", "31-60", "61-90", "90+"]
        for c in snapshot.currencies
    )


def _snapshots(engine: Engine) -> int:
    with reading(engine) as session:
        return int(session.scalar(select(func.count()).select_from(OverdueSnapshot)) or 0)


def test_a_customer_sweep_and_a_dry_run_leave_the_snapshot_alone(
    engine: Engine, db_url: str, generated: SandboxHandle, tmp_path: Path
) -> None:
    _sweep(db_url, generated, tmp_path)
    assert _snapshots(engine) == 1
    with reading(engine) as session:
        before = overdue_now(session)
    _sweep(db_url, generated, tmp_path, customer="cus_00001")
    _sweep(db_url, generated, tmp_path, dry_run=True)
    assert _snapshots(engine) == 1
    with reading(engine) as session:
        assert overdue_now(session) == before


def test_nothing_overdue_is_a_snapshot_with_no_currency(
    engine: Engine, db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data={"customers": [], "invoices": []})
    with reading(engine) as session:
        assert overdue_now(session) is None  # no full sweep yet: unknown, not zero
    _sweep(db_url, sandbox, tmp_path)
    with reading(engine) as session:
        snapshot = overdue_now(session)
    assert snapshot is not None
    assert snapshot.currencies == ()

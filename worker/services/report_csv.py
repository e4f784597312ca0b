"""The report as one CSV table for spreadsheets: one row per figure, a `section` column.

Sections: `overdue` (one row per currency and ageing bucket, plus `total`), `recovery` (per
policy, currency and attempt), `action` (who needs a human), `next_sweep` (expected asks).
Amounts are given twice: integer cents, and a decimal `amount` in the currency's units.
Columns that do not apply to a section are empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from worker.services.report import FinanceReport

COLUMNS = (
    "section",
    "currency",
    "policy",
    "attempt",
    "channel",
    "bucket",
    "kind",
    "customer",
    "intent_id",
    "count",
    "paid",
    "partially_paid",
    "customers",
    "amount_cents",
    "amount",
    "recovered_cents",
    "recovery_rate",
    "median_days_to_pay",
    "at",
    "detail",
)


def _amount(cents: int | None) -> str:
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def _at(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _rows(report: FinanceReport) -> Iterator[dict[str, Any]]:
    if report.overdue is not None:
        for currency in report.overdue.currencies:
            for bucket in currency.buckets:
                yield {
                    "section": "overdue",
                    "currency": currency.currency,
                    "bucket": bucket.label,
                    "count": bucket.invoices,
                    "customers": bucket.customers,
                    "amount_cents": bucket.due_cents,
                    "amount": _amount(bucket.due_cents),
                    "at": _at(report.overdue.taken_at),
                }
            yield {
                "section": "overdue",
                "currency": currency.currency,
                "bucket": "total",
                "count": currency.invoices,
                "customers": currency.customers,
                "amount_cents": currency.due_cents,
                "amount": _amount(currency.due_cents),
                "at": _at(report.overdue.taken_at),
            }
    for row in report.recovery.rows:
        days = row.median_days_to_pay
        yield {
            "section": "recovery",
            "currency": row.currency,
            "policy": row.policy,
            "attempt": row.attempt_number,
            "channel": row.channel,
            "count": row.asked,
            "paid": row.paid,
            "partially_paid": row.partially_paid,
            "amount_cents": row.asked_cents,
            "amount": _amount(row.asked_cents),
            "recovered_cents": row.recovered_cents,
            "recovery_rate": row.recovery_rate,
            "median_days_to_pay": "" if days is None else round(days, 3),
        }
    for item in report.actions:
        yield {
            "section": "action",
            "kind": item.kind,
            "customer": item.external_customer_id,
            "currency": item.currency or "",
            "policy": item.policy or "",
            "intent_id": item.intent_id or "",
            "amount_cents": "" if item.amount_cents is None else item.amount_cents,
            "amount": _amount(item.amount_cents),
            "at": _at(item.since),
            "detail": item.detail,
        }
    for ask in report.next_sweep.asks:
        yield {
            "section": "next_sweep",
            "kind": ask.why,
            "customer": ask.external_customer_id,
            "currency": ask.currency,
            "policy": ask.policy or "",
            "intent_id": ask.intent_id or "",
            "amount_cents": ask.amount_cents,
            "amount": _amount(ask.amount_cents),
            "at": _at(ask.due_at),
        }


def render_csv(report: FinanceReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rows(report))
    return buffer.getvalue()

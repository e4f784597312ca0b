"""Turn the overdue-invoice stream into dunning groups, keeping only what decisions need.

Every listed invoice is first judged from its own fields (`worker.policy.eligibility`): the
listing's filters are an optimisation, never a guarantee. An invoice that is not provably
eligible is a reason-coded skip; the counts by reason (`invoices_by_reason`) add up to
`invoices_seen`, so every invoice seen is accounted for.

A group is one customer's eligible invoices in one currency for one billing entity (Lago
requires one currency and one billing entity per payment request). Lago lists invoices by
issuing date, not by customer, so a group is complete only once the whole listing is read.
To keep memory flat however many invoices are listed, each invoice is reduced to a few
columns and spooled to a temporary SQLite file (skips too); groups and skip summaries are then
read back one at a time, sorted by customer, currency and billing entity. The pydantic objects
are dropped as soon as they are read.
"""

from __future__ import annotations

import json
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from worker.lago.models import Customer, Invoice, MalformedRecord
from worker.policy.eligibility import Verdict
from worker.policy.types import CustomerFacts, Group, InvoiceFacts, Reason
from worker.services.invoice_facts import judge
from worker.services.requested_elsewhere import RequestedElsewhere
from worker.store.ageing import ALL_BUCKETS, BUCKETS, AgeingFigure

_BATCH = 1000
_SCHEMA = """
CREATE TABLE customers (
    external_id TEXT PRIMARY KEY, email TEXT, metadata TEXT NOT NULL,
    customer_type TEXT, country TEXT, timezone TEXT
);
CREATE TABLE invoices (
    customer TEXT NOT NULL, currency TEXT NOT NULL, entity TEXT NOT NULL,
    lago_id TEXT NOT NULL, number TEXT NOT NULL, due_date TEXT,
    due_cents INTEGER NOT NULL, total_cents INTEGER, requested_at TEXT
);
CREATE TABLE skips (
    customer TEXT NOT NULL, currency TEXT NOT NULL, entity TEXT NOT NULL, reason TEXT NOT NULL,
    due_cents INTEGER, detail TEXT NOT NULL
);
"""
_NO_ENTITY = ""  # SQLite sorts and groups NULLs awkwardly: '' stands for "no billing entity"
_CURRENCY = re.compile(r"^[A-Z]{3}$")
UNKNOWN_CUSTOMER = "-"
UNKNOWN_CURRENCY = "---"
#: Invoice details quoted in one skip summary; the rest are counted.
_DETAILS_SHOWN = 3


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record of Lago's answer that could not be read; the sweep records it as a skip."""

    lago_id: str | None
    external_customer_id: str | None
    error: str


@dataclass(frozen=True, slots=True)
class SkippedInvoices:
    """Invoices of one customer, currency and billing entity skipped for one reason.

    `amount_cents` sums the amounts due that are known (None when none is)."""

    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    reason: Reason
    invoice_count: int
    amount_cents: int | None
    detail: str


def customer_facts(customer: Customer) -> CustomerFacts:
    return CustomerFacts(
        external_id=customer.external_id,
        email=customer.email or None,
        metadata=customer.metadata_dict(),
        customer_type=customer.customer_type,
        country=customer.country,
        timezone=customer.applicable_timezone or customer.timezone,
    )


class OverdueInvoiceIds(Set[str]):
    """The ids of the eligible (overdue, unpaid) invoices the listing showed, from the spool."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def __contains__(self, lago_id: object) -> bool:
        row = self._db.execute("SELECT 1 FROM invoices WHERE lago_id = ? LIMIT 1", (lago_id,))
        return row.fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        for (lago_id,) in self._db.execute("SELECT lago_id FROM invoices"):
            yield str(lago_id)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM invoices").fetchone()[0])


@dataclass(slots=True)
class CollectedGroups:
    """The result of reading a listing. Close it (or use `with`) to delete the spool file.

    `invoices_by_reason` counts every invoice seen by what became of it: `eligible` (grouped),
    a skip reason, or `malformed_record`; its values add up to `invoices_seen`.
    """

    _db: sqlite3.Connection
    _directory: tempfile.TemporaryDirectory[str]
    malformed: list[Malformed] = field(default_factory=list)
    invoices_seen: int = 0
    invoices_by_reason: Counter[str] = field(default_factory=Counter)
    group_count: int = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._directory.cleanup()

    @property
    def overdue_invoice_ids(self) -> OverdueInvoiceIds:
        return OverdueInvoiceIds(self._db)

    def ageing(self, today: date) -> list[AgeingFigure]:
        """What the listing showed as overdue, per currency and ageing bucket (days past the
        due date on `today`; see `worker.store.ageing.bucket_for`), plus each currency's total
        (bucket `ALL_BUCKETS`: a customer may owe in several buckets)."""
        days = "CAST(julianday(?) - julianday(due_date) AS INTEGER)"
        cases = " ".join(
            f"WHEN {days} <= {last} THEN '{label}'" for label, last in BUCKETS if last is not None
        )
        figures = "COUNT(*), COUNT(DISTINCT customer), SUM(due_cents)"
        rows = self._db.execute(
            f"SELECT currency, CASE WHEN due_date IS NULL THEN '{BUCKETS[0][0]}' {cases} "  # noqa: S608 - constants only
            f"ELSE '{BUCKETS[-1][0]}' END AS bucket, {figures} FROM invoices "
            f"GROUP BY currency, bucket UNION ALL SELECT currency, '{ALL_BUCKETS}', {figures} "
            "FROM invoices GROUP BY currency ORDER BY 1, 2",
            [today.isoformat()] * (len(BUCKETS) - 1),
        )
        return [AgeingFigure(*row) for row in rows]

    @property
    def groups(self) -> list[Group]:
        """Every group at once (small listings, tests); the sweep uses `iter_groups()`."""
        return list(self.iter_groups())

    @property
    def skips(self) -> list[SkippedInvoices]:
        """Every skip summary at once (tests); the sweep uses `iter_skips()`."""
        return list(self.iter_skips())

    def iter_groups(self) -> Iterator[Group]:
        """Groups sorted by (customer, currency, billing entity), built one at a time."""
        customers = self._db.cursor()
        rows = self._db.execute(
            "SELECT customer, currency, entity, lago_id, number, due_date, due_cents, "
            "total_cents, requested_at FROM invoices ORDER BY customer, currency, entity, lago_id"
        )
        current: tuple[str, str, str] | None = None
        facts: list[InvoiceFacts] = []
        for customer, currency, entity, lago_id, number, due_date, due, total, asked in rows:
            key = (customer, currency, entity)
            if key != current:
                if current is not None:
                    yield _group(customers, current, facts)
                current, facts = key, []
            facts.append(
                InvoiceFacts(
                    lago_id=lago_id,
                    number=number,
                    currency=currency,
                    payment_due_date=date.fromisoformat(due_date) if due_date else None,
                    total_due_amount_cents=due,
                    total_amount_cents=due if total is None else total,
                    requested_elsewhere_at=datetime.fromisoformat(asked) if asked else None,
                )
            )
        if current is not None:
            yield _group(customers, current, facts)

    def iter_skips(self) -> Iterator[SkippedInvoices]:
        """One summary per (customer, currency, billing entity, reason), in that order."""
        rows = self._db.execute(
            "SELECT customer, currency, entity, reason, COUNT(*), SUM(due_cents), "
            "(SELECT group_concat(detail, '; ') FROM (SELECT detail FROM skips AS inner_skips "
            " WHERE inner_skips.customer = skips.customer "
            " AND inner_skips.currency = skips.currency AND inner_skips.entity = skips.entity "
            " AND inner_skips.reason = skips.reason ORDER BY detail LIMIT ?)) "
            "FROM skips GROUP BY customer, currency, entity, reason "
            "ORDER BY customer, currency, entity, reason",
            (_DETAILS_SHOWN,),
        )
        for customer, currency, entity, reason, count, amount, details in rows:
            more = count - min(count, _DETAILS_SHOWN)
            detail = details + (f"; and {more} more" if more else "")
            yield SkippedInvoices(
                external_customer_id=customer,
                currency=currency,
                billing_entity_code=entity or None,
                reason=Reason(reason),
                invoice_count=int(count),
                amount_cents=None if amount is None else int(amount),
                detail=detail,
            )


def _group(cursor: sqlite3.Cursor, key: tuple[str, str, str], facts: list[InvoiceFacts]) -> Group:
    customer, currency, entity = key
    email, metadata, customer_type, country, timezone = cursor.execute(
        "SELECT email, metadata, customer_type, country, timezone FROM customers "
        "WHERE external_id = ?",
        (customer,),
    ).fetchone()
    return Group(
        customer=CustomerFacts(
            external_id=customer,
            email=email,
            metadata=json.loads(metadata),
            customer_type=customer_type,
            country=country,
            timezone=timezone,
        ),
        currency=currency,
        billing_entity_code=entity or None,
        invoices=tuple(facts),
    )


def _open_spool() -> tuple[sqlite3.Connection, tempfile.TemporaryDirectory[str]]:
    directory = tempfile.TemporaryDirectory(prefix="dunning-sweep-")
    connection = sqlite3.connect(Path(directory.name) / "spool.sqlite3", check_same_thread=False)
    connection.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16000;" + _SCHEMA
    )
    return connection, directory


def collect_groups(
    items: Iterable[Invoice | MalformedRecord],
    *,
    now: datetime,
    customer: str | None = None,
    requested_elsewhere: RequestedElsewhere | None = None,
) -> CollectedGroups:
    """Judge and spool the listing at `now`. `customer`: the sweep is for that external
    customer id only (another customer's invoice is then a skip, whatever the listing did)."""
    connection, directory = _open_spool()
    result = CollectedGroups(_db=connection, _directory=directory)
    try:
        _Spooler(result, connection, now, customer, requested_elsewhere).run(items)
    except BaseException:
        result.close()
        raise
    return result


class _Spooler:
    """Reads the listing once, writing grouped invoices and skips in batches."""

    def __init__(
        self,
        result: CollectedGroups,
        db: sqlite3.Connection,
        now: datetime,
        customer: str | None,
        requested_elsewhere: RequestedElsewhere | None,
    ) -> None:
        self.result = result
        self.db = db
        self.now = now
        self.customer = customer
        self.elsewhere = requested_elsewhere or RequestedElsewhere()
        self.invoices: list[tuple[object, ...]] = []
        self.skips: list[tuple[object, ...]] = []
        self.customers: dict[str, tuple[object, ...]] = {}

    def run(self, items: Iterable[Invoice | MalformedRecord]) -> None:
        result = self.result
        for item in items:
            result.invoices_seen += 1
            if isinstance(item, MalformedRecord):
                result.invoices_by_reason[Reason.MALFORMED_RECORD.value] += 1
                result.malformed.append(
                    Malformed(item.lago_id, item.external_customer_id, item.error)
                )
                continue
            verdict = judge(item, self.now, only_customer=self.customer)
            result.invoices_by_reason[verdict.reason.value] += 1
            if verdict.eligible:
                self._keep(item, verdict)
            else:
                self._skip(item, verdict)
            if len(self.invoices) + len(self.skips) >= _BATCH:
                self._flush()
        self._flush()
        self.db.execute("CREATE INDEX invoices_lago_id ON invoices (lago_id)")
        result.group_count = int(
            self.db.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM invoices GROUP BY customer, currency, entity)"
            ).fetchone()[0]
        )

    def _keep(self, item: Invoice, verdict: Verdict) -> None:
        assert item.customer is not None
        assert item.currency is not None
        assert verdict.due_cents is not None
        external_id = item.customer.external_id
        if external_id not in self.customers:
            facts = customer_facts(item.customer)
            self.customers[external_id] = (
                external_id,
                facts.email,
                json.dumps(dict(facts.metadata)),
                facts.customer_type,
                facts.country,
                facts.timezone,
            )
        asked = self.elsewhere.requested_at(item.lago_id, external_id)
        self.invoices.append(
            (
                external_id,
                item.currency,
                item.billing_entity_code or _NO_ENTITY,
                item.lago_id,
                item.number,
                item.payment_due_date.isoformat() if item.payment_due_date else None,
                verdict.due_cents,
                item.total_amount_cents,
                asked.isoformat() if asked else None,
            )
        )

    def _skip(self, item: Invoice, verdict: Verdict) -> None:
        if verdict.reason is Reason.OTHER_CUSTOMER:
            return  # counted; not ours to record in a one-customer sweep
        customer = item.customer.external_id if item.customer is not None else UNKNOWN_CUSTOMER
        currency = item.currency if item.currency and _CURRENCY.match(item.currency) else None
        self.skips.append(
            (
                customer,
                currency or UNKNOWN_CURRENCY,
                item.billing_entity_code or _NO_ENTITY,
                verdict.reason.value,
                verdict.due_cents,
                verdict.detail,
            )
        )

    def _flush(self) -> None:
        """Write the pending rows; customers are kept in memory only until they are written."""
        db = self.db
        db.executemany(
            "INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?, ?, ?)", self.customers.values()
        )
        db.executemany("INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self.invoices)
        db.executemany("INSERT INTO skips VALUES (?, ?, ?, ?, ?, ?)", self.skips)
        self.invoices.clear()
        self.skips.clear()
        self.customers.clear()

"""Turn the overdue-invoice stream into dunning groups, keeping only what decisions need.

A group is one customer's overdue invoices in one currency for one billing entity (Lago
requires one currency and one billing entity per payment request). Lago lists invoices by
issuing date, not by customer, so a group is complete only once the whole listing is read.
To keep memory flat however many invoices are overdue, each listed invoice is reduced to a
few columns and spooled to a temporary SQLite file; groups are then read back one at a time,
sorted by customer, currency and billing entity. The pydantic objects are dropped as soon as
they are read.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Self

from worker.lago.models import Customer, Invoice, MalformedRecord
from worker.policy.types import CustomerFacts, Group, InvoiceFacts
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
    due_cents INTEGER NOT NULL, total_cents INTEGER NOT NULL
);
"""
_NO_ENTITY = ""  # SQLite sorts and groups NULLs awkwardly: '' stands for "no billing entity"


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record of Lago's answer that could not be used; the sweep records it as a skip."""

    lago_id: str | None
    external_customer_id: str | None
    error: str


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
    """The ids of the invoices the listing showed as overdue, answered from the spool."""

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
    """The result of reading a listing. Close it (or use `with`) to delete the spool file."""

    _db: sqlite3.Connection
    _directory: tempfile.TemporaryDirectory[str]
    malformed: list[Malformed] = field(default_factory=list)
    invoices_seen: int = 0
    nothing_due: int = 0
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

    def iter_groups(self) -> Iterator[Group]:
        """Groups sorted by (customer, currency, billing entity), built one at a time."""
        customers = self._db.cursor()
        rows = self._db.execute(
            "SELECT customer, currency, entity, lago_id, number, due_date, due_cents, "
            "total_cents FROM invoices ORDER BY customer, currency, entity, lago_id"
        )
        current: tuple[str, str, str] | None = None
        facts: list[InvoiceFacts] = []
        for customer, currency, entity, lago_id, number, due_date, due, total in rows:
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
                    total_amount_cents=total,
                )
            )
        if current is not None:
            yield _group(customers, current, facts)


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
    items: Iterable[Invoice | MalformedRecord], *, customer: str | None = None
) -> CollectedGroups:
    """Read the listing into the spool. `customer` keeps only that external customer id
    (defensive: the listing is already filtered by it when given)."""
    connection, directory = _open_spool()
    result = CollectedGroups(_db=connection, _directory=directory)
    try:
        _spool(result, connection, items, customer)
    except BaseException:
        result.close()
        raise
    return result


def _spool(
    result: CollectedGroups,
    db: sqlite3.Connection,
    items: Iterable[Invoice | MalformedRecord],
    customer: str | None,
) -> None:
    invoices: list[tuple[object, ...]] = []
    customers: dict[str, tuple[object, ...]] = {}
    for item in items:
        result.invoices_seen += 1
        if isinstance(item, MalformedRecord):
            result.malformed.append(Malformed(item.lago_id, None, item.error))
            continue
        if item.customer is None:
            result.malformed.append(
                Malformed(item.lago_id, None, f"invoice {item.lago_id} has no customer object")
            )
            continue
        external_id = item.customer.external_id
        if customer is not None and external_id != customer:
            continue
        if item.due_cents <= 0:
            result.nothing_due += 1
            continue
        if external_id not in customers:
            facts = customer_facts(item.customer)
            customers[external_id] = (
                external_id,
                facts.email,
                json.dumps(dict(facts.metadata)),
                facts.customer_type,
                facts.country,
                facts.timezone,
            )
        invoices.append(
            (
                external_id,
                item.currency,
                item.billing_entity_code or _NO_ENTITY,
                item.lago_id,
                item.number,
                item.payment_due_date.isoformat() if item.payment_due_date else None,
                item.due_cents,
                item.total_amount_cents,
            )
        )
        if len(invoices) >= _BATCH:
            _flush(db, invoices, customers)
    _flush(db, invoices, customers)
    db.execute("CREATE INDEX invoices_lago_id ON invoices (lago_id)")
    result.group_count = int(
        db.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM invoices GROUP BY customer, currency, entity)"
        ).fetchone()[0]
    )


def _flush(
    db: sqlite3.Connection,
    invoices: list[tuple[object, ...]],
    customers: dict[str, tuple[object, ...]],
) -> None:
    """Write the pending rows; customers are kept in memory only until they are written."""
    db.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?, ?, ?)", customers.values())
    db.executemany("INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?)", invoices)
    invoices.clear()
    customers.clear()

"""Data files (`--data`), the generator, and the command line's flag checks."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sandbox.dataset import DataError, build_dataset, load_data_file
from sandbox.generator import GeneratorSpec, generate_document
from tests.sandbox.builders import customer, document, invoice
from worker.cli.sandbox_cmd import register

TODAY = date(2025, 6, 15)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], 'the document must be an object like {"customers": [...], "invoices": [...]}'),
        (
            {"clients": []},
            "unknown top-level key 'clients' (expected customers, invoices, payments, "
            + "payment_requests)",
        ),
        (
            {"customers": [{"name": "x"}]},
            "customers[0] (external_id=None): 'external_id' is required",
        ),
        (
            {"customers": [customer("a", country="France")]},
            "customers[0] (external_id=a): 'country' must be a 2-letter country code",
        ),
        (
            document([customer("a"), customer("a")], []),
            "customers[1] (external_id=a): 'external_id' is duplicated",
        ),
        (
            document(
                [customer("a")], [invoice("b", lago_id="5b0c1f9e-1111-4222-8333-944455556666")]
            ),
            "invoices[0] (id=5b0c1f9e-1111-4222-8333-944455556666): 'customer.external_id' "
            "names unknown customer 'b'",
        ),
        (
            document([customer("a")], [invoice("a", number="X-1", lago_id=None)]),
            "invoices[0] (id=X-1): 'lago_id' must be a UUID",
        ),
        (
            document([customer("a")], [invoice("a", number="X-3", payment_status="paid")]),
            "'payment_status' must be one of: pending, succeeded, failed",
        ),
        (
            document([customer("a")], [invoice("a", number="X-4", issuing_date="15/06/2025")]),
            "'issuing_date' must be a date like 2025-01-31",
        ),
    ],
)
def test_invalid_documents_name_the_record_and_field(doc: Any, message: str) -> None:
    with pytest.raises(DataError) as caught:
        build_dataset(doc, TODAY)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_integer_fields_say_so() -> None:
    doc = document([customer("a")], [invoice("a", number="X-2", total_amount_cents="10")])
    with pytest.raises(DataError, match=r"'total_amount_cents' must be an integer"):
        build_dataset(doc, TODAY)


def test_minimal_records_get_derived_fields(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(
        json.dumps(
            {
                "customers": [{"external_id": "a"}],
                "invoices": [
                    {
                        "customer": {"external_id": "a"},
                        "currency": "EUR",
                        "total_amount_cents": 5_000,
                        "total_paid_amount_cents": 1_000,
                        "issuing_date": "2025-05-01",
                        "net_payment_term": 15,
                    }
                ],
            }
        )
    )
    dataset = load_data_file(path, TODAY)
    (only,) = dataset.invoices.values()
    assert only.data["payment_due_date"] == "2025-05-16"
    assert only.data["payment_overdue"] is True
    assert only.data["total_due_amount_cents"] == 4_000
    assert only.data["status"] == "finalized"
    assert only.data["billing_entity_code"] == "default"
    assert only.ready_for_payment_processing is True
    assert dataset.customers["a"].data["applicable_timezone"] == "UTC"


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read data file"):
        load_data_file(tmp_path / "missing.json", TODAY)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match=r"is not valid JSON: .* at line 1"):
        load_data_file(broken, TODAY)


def test_generator_is_deterministic_for_a_seed() -> None:
    spec = GeneratorSpec(customers=30, invoices_per_customer=5, seed=3)
    assert generate_document(spec, TODAY) == generate_document(spec, TODAY)
    other = generate_document(GeneratorSpec(customers=30, invoices_per_customer=5, seed=4), TODAY)
    assert other != generate_document(spec, TODAY)


def test_generated_data_is_varied_like_real_billing_data() -> None:
    spec = GeneratorSpec(customers=300, invoices_per_customer=6, seed=1)
    dataset = build_dataset(generate_document(spec, TODAY), TODAY)
    invoices = [inv.data for inv in dataset.invoices.values()]
    customers = [c.data for c in dataset.customers.values()]
    assert len(invoices) == 1_800
    assert {"USD", "EUR", "GBP"} <= {inv["currency"] for inv in invoices}
    assert {"acme_us", "acme_eu", "acme_uk"} == {inv["billing_entity_code"] for inv in invoices}
    assert len({c["applicable_timezone"] for c in customers}) >= 6
    assert {c["customer_type"] for c in customers} == {"company", "individual"}
    assert all(any(m["key"] == "segment" for m in c["metadata"]) for c in customers)
    overdue = [inv for inv in invoices if inv["payment_overdue"]]
    assert 0.2 < len(overdue) / len(invoices) < 0.8
    assert any(inv["status"] == "finalized" and not inv["payment_overdue"] for inv in invoices)
    assert any(0 < inv["total_paid_amount_cents"] < inv["total_amount_cents"] for inv in overdue)
    assert any(inv["self_billed"] for inv in overdue)
    assert any(inv["total_due_amount_cents"] == 0 for inv in overdue)
    assert any(not inv.ready_for_payment_processing for inv in dataset.invoices.values())
    per_customer: dict[str, set[tuple[str, str]]] = {}
    for inv in dataset.invoices.values():
        per_customer.setdefault(inv.customer_external_id, set()).add(
            (inv.data["currency"], inv.data["billing_entity_code"])
        )
    assert Counter(len(groups) >= 2 for groups in per_customer.values())[True] >= 2


def test_first_two_customers_are_fixed_archetypes() -> None:
    doc = generate_document(GeneratorSpec(customers=2, invoices_per_customer=4, seed=9), TODAY)
    first = [i for i in doc["invoices"] if i["customer"]["external_id"] == "cus_00001"]
    second = [i for i in doc["invoices"] if i["customer"]["external_id"] == "cus_00002"]
    assert all(i["payment_overdue"] and i["ready_for_payment_processing"] for i in first)
    assert len({i["currency"] for i in first}) == 1
    assert len({(i["currency"], i["billing_entity_code"]) for i in second}) == 2


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:
        """Keeps Typer in multi-command mode like the real CLI."""

    return app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-rate", "1.5"], "error: --error-rate must be between 0 and 1, got 1.5"),
        (["--drop-rate", "-1"], "error: --drop-rate must be between 0 and 1, got -1.0"),
        (["--rate-limit", "-5"], "error: --rate-limit must be >= 0 (0 = off), got -5"),
        (["--customers", "-1"], "error: --customers must be >= 0, got -1"),
        (["--data", "/nowhere/x.json"], "error: cannot read data file /nowhere/x.json"),
        (["--data", "x.json", "--customers", "2"], "error: use either --data or --customers"),
        (["--webhook-algo", "hmac"], "error: --webhook-algo hmac needs --webhook-hmac-key"),
        (["--today", "tomorrow"], "error: --today must be a date like 2025-01-31"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli(), ["sandbox", *args])
    assert result.exit_code == 2
    assert result.output.startswith(message)
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_invalid_data_file_is_reported_by_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document([customer("a")], [invoice("a", currency="usd")])))
    result = CliRunner().invoke(cli(), ["sandbox", "--data", str(path)])
    assert result.exit_code == 2
    assert "'currency' must be a 3-letter currency code" in result.output

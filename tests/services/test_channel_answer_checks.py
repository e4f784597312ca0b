"""The checks of the retry_and_email channel's answers: our invoice, our customer, a URL."""

from __future__ import annotations

import pytest

from worker.lago.models import Customer, Invoice, InvoicePaymentDetails
from worker.services.answer_checks import check_invoice, check_link


def details(**fields: object) -> InvoicePaymentDetails:
    values: dict[str, object] = {
        "lago_invoice_id": "inv-1",
        "external_customer_id": "cus-1",
        "payment_url": "https://checkout.example/pay/1",
        **fields,
    }
    return InvoicePaymentDetails.model_validate(values)


def test_a_link_for_our_invoice_passes() -> None:
    assert check_link(details(), lago_id="inv-1", external_customer_id="cus-1") is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"lago_invoice_id": "inv-2"}, "other_invoice"),
        ({"external_customer_id": "cus-2"}, "other_customer"),
        ({"payment_url": None}, "no_url"),
        ({"payment_url": "javascript:alert(1)"}, "no_url"),
        ({"payment_url": "https://"}, "no_url"),
    ],
)
def test_a_link_we_cannot_explain_is_refused(fields: dict[str, object], problem: str) -> None:
    found = check_link(details(**fields), lago_id="inv-1", external_customer_id="cus-1")
    assert found is not None
    assert found.problem == problem


def test_an_invoice_read_back_must_be_ours() -> None:
    mine = Invoice(lago_id="inv-1", customer=Customer(external_id="cus-1"))
    assert check_invoice(mine, lago_id="inv-1", external_customer_id="cus-1") is None
    other = check_invoice(mine, lago_id="inv-1", external_customer_id="cus-2")
    assert other is not None
    assert other.problem == "other_customer"
    swapped = check_invoice(mine, lago_id="inv-9", external_customer_id="cus-1")
    assert swapped is not None
    assert swapped.problem == "other_invoice"
    anonymous = Invoice(lago_id="inv-1")
    assert check_invoice(anonymous, lago_id="inv-1", external_customer_id="cus-1") is not None

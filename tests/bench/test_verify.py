"""The chaos audit on hand-made cases: it must catch duplicates, lost groups and open intents."""

from __future__ import annotations

from typing import Any

from bench.verify import IntentRow, audit, groups_to_dun


def invoice(lago_id: str, customer: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "lago_id": lago_id,
        "customer": {"external_id": customer},
        "currency": "EUR",
        "billing_entity_code": "acme_eu",
        "status": "finalized",
        "payment_overdue": True,
        "payment_status": "pending",
        "self_billed": False,
        "total_due_amount_cents": 1000,
    }
    data.update(overrides)
    return data


def request(
    lago_id: str, customer: str, invoice_ids: list[str], **overrides: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "lago_id": lago_id,
        "external_customer_id": customer,
        "amount_currency": "EUR",
        "invoices": [{"billing_entity_code": "acme_eu"}],
        "lago_invoice_ids": invoice_ids,
        "payment_status": "pending",
        "origin": "api",
    }
    data.update(overrides)
    return data


def intent(
    intent_id: int,
    customer: str,
    status: str = "sent",
    lago_id: str | None = None,
    code: str | None = None,
) -> IntentRow:
    return IntentRow(
        id=intent_id,
        group=(customer, "EUR", "acme_eu"),
        attempt_number=1,
        status=status,
        lago_payment_request_id=lago_id,
        last_error_code=code,
        last_error=code,
    )


INVOICES = [invoice("i1", "c1"), invoice("i2", "c1"), invoice("i3", "c2")]


def test_groups_to_dun_keeps_only_overdue_unpaid_invoices_with_something_due() -> None:
    invoices = [
        *INVOICES,
        invoice("paid", "c3", payment_status="succeeded"),
        invoice("draft", "c3", status="draft"),
        invoice("self", "c3", self_billed=True),
        invoice("credited", "c3", total_due_amount_cents=0),
        invoice("not-due", "c3", payment_overdue=False),
    ]
    assert groups_to_dun(invoices) == {
        ("c1", "EUR", "acme_eu"): {"i1", "i2"},
        ("c2", "EUR", "acme_eu"): {"i3"},
    }


def test_one_request_per_group_passes() -> None:
    result = audit(
        invoices=INVOICES,
        payment_requests=[request("r1", "c1", ["i1", "i2"]), request("r2", "c2", ["i3"])],
        intents=[intent(1, "c1", lago_id="r1"), intent(2, "c2", "adopted", lago_id="r2")],
    )
    assert result.ok
    assert (result.groups, result.requests, result.adoptions) == (2, 2, 1)
    assert (result.duplicates, result.lost, result.orphans) == (0, 0, 0)


def test_a_second_request_for_a_group_is_a_duplicate() -> None:
    result = audit(
        invoices=INVOICES,
        payment_requests=[
            request("r1", "c1", ["i1", "i2"]),
            request("r1b", "c1", ["i1", "i2"]),
            request("r2", "c2", ["i3"]),
        ],
        intents=[intent(1, "c1", lago_id="r1"), intent(2, "c2", lago_id="r2")],
    )
    assert not result.ok
    assert result.duplicates == 1
    assert result.orphans == 1


def test_requests_made_by_lagos_own_dunning_are_not_ours() -> None:
    result = audit(
        invoices=INVOICES,
        payment_requests=[
            request("r1", "c1", ["i1", "i2"]),
            request("campaign", "c1", ["i1", "i2"], origin="dunning_campaign"),
            request("r2", "c2", ["i3"]),
        ],
        intents=[intent(1, "c1", lago_id="r1"), intent(2, "c2", lago_id="r2")],
    )
    assert result.ok
    assert result.requests == 2


def test_a_group_without_request_or_reason_is_lost() -> None:
    result = audit(
        invoices=INVOICES,
        payment_requests=[request("r1", "c1", ["i1", "i2"])],
        intents=[intent(1, "c1", lago_id="r1")],
    )
    assert not result.ok
    assert result.lost == 1


def test_a_refusal_with_a_code_or_a_deferral_is_a_reasoned_outcome() -> None:
    refused = audit(
        invoices=INVOICES,
        payment_requests=[request("r1", "c1", ["i1", "i2"])],
        intents=[
            intent(1, "c1", lago_id="r1"),
            intent(2, "c2", "refused", code="invoices_not_overdue"),
        ],
    )
    assert refused.ok
    assert refused.refused_codes == {"invoices_not_overdue": 1}
    deferred = audit(
        invoices=INVOICES,
        payment_requests=[request("r1", "c1", ["i1", "i2"])],
        intents=[
            intent(1, "c1", lago_id="r1"),
            intent(2, "c2", "pending", code="invoices_not_ready_for_payment_processing"),
        ],
    )
    assert deferred.ok
    assert deferred.deferred == 1


def test_open_intents_and_reasonless_endings_fail() -> None:
    still_sending = audit(
        invoices=INVOICES,
        payment_requests=[request("r1", "c1", ["i1", "i2"]), request("r2", "c2", ["i3"])],
        intents=[intent(1, "c1", lago_id="r1"), intent(2, "c2", "sending")],
    )
    assert not still_sending.ok
    assert still_sending.open_intents == 1
    no_reason = audit(
        invoices=INVOICES,
        payment_requests=[request("r1", "c1", ["i1", "i2"])],
        intents=[intent(1, "c1", lago_id="r1"), intent(2, "c2", "needs_review")],
    )
    assert not no_reason.ok
    assert no_reason.unexplained == 1
    assert no_reason.lost == 1


def test_a_sent_intent_without_a_lago_id_counts_as_lost() -> None:
    result = audit(
        invoices=INVOICES[:2],
        payment_requests=[request("r1", "c1", ["i1", "i2"])],
        intents=[intent(1, "c1", lago_id="r1"), intent(2, "c1", "sent")],
    )
    assert result.lost == 1

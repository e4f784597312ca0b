"""Customers who pay on their own some time after a payment request (`--pay-rate`)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from sandbox.autopay import AutopaySettings
from sandbox.server import running_sandbox
from sandbox.state import SandboxOptions
from tests.fixtures.sandbox import REPO_ROOT, SandboxHandle
from tests.sandbox.builders import customer, document, invoice


def _ask(url: str, key: str, customer_id: str, invoice_ids: list[str]) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/api/v1/payment_requests",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "payment_request": {
                "external_customer_id": customer_id,
                "lago_invoice_ids": invoice_ids,
            }
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["payment_request"]
    return body


def _started(rate: float) -> Any:
    data = document(
        [customer("alice")],
        [invoice("alice", total_amount_cents=10_000), invoice("alice", total_amount_cents=2_500)],
    )
    options = SandboxOptions(
        data=data, autopay=AutopaySettings(rate=rate, min_delay_s=0.2, max_delay_s=0.4)
    )
    return running_sandbox(options)


def test_a_paying_customer_settles_the_requested_invoices_after_the_delay() -> None:
    with _started(rate=1.0) as running:
        handle = SandboxHandle(running.url, running.api_key)
        ids = [row["lago_id"] for row in handle.invoices()]
        _ask(running.url, running.api_key, "alice", ids)
        assert all(row["total_due_amount_cents"] > 0 for row in handle.invoices())  # not yet
        deadline = time.monotonic() + 10
        while any(row["payment_overdue"] for row in handle.invoices()):
            assert time.monotonic() < deadline, "nobody paid"
            time.sleep(0.05)
        rows = handle.invoices()
        assert {row["payment_status"] for row in rows} == {"succeeded"}
        assert {row["total_due_amount_cents"] for row in rows} == {0}
        with handle.api_client() as client:
            payments = client.get("/api/v1/payments").json()["payments"]
        assert sorted(p["amount_cents"] for p in payments) == [2_500, 10_000]
        assert running.state.autopay.paid_requests == 1
        handle.close()


def test_with_no_pay_rate_nobody_pays(sandbox: SandboxHandle) -> None:
    payable = [
        row["lago_id"]
        for row in sandbox.invoices()
        if row["customer"]["external_id"] == "cus_00001" and row["payment_overdue"]
    ]
    _ask(sandbox.url, sandbox.api_key, "cus_00001", payable)
    time.sleep(0.5)
    with sandbox.api_client() as client:
        assert client.get("/api/v1/payments").json()["payments"] == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pay-rate", "1.5"], "error: --pay-rate must be between 0 and 1, got 1.5"),
        (
            ["--pay-delay-min", "9", "--pay-delay-max", "3"],
            "error: --pay-delay-max must be >= pay-delay-min (9.0), got 3.0",
        ),
    ],
)
def test_bad_pay_flags_are_one_line(flags: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", *flags],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == message

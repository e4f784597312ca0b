"""The shared fixtures work: in-process server, per-test reset, subprocess sandbox."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.sandbox import SandboxHandle, SandboxProcess


def test_sandbox_fixture_serves_the_default_data(sandbox: SandboxHandle) -> None:
    with sandbox.api_client() as client:
        response = client.get("/api/v1/invoices", params={"per_page": 100})
    assert response.status_code == 200
    assert response.json()["meta"]["total_count"] == 40
    assert len(sandbox.invoices()) == 40
    assert sandbox.request_count("GET /api/v1/invoices", 200) == 1


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_starts_from_clean_state(sandbox: SandboxHandle, run: int) -> None:
    assert sandbox.stats()["total"] == 0
    assert sandbox.payment_requests() == []
    assert sandbox.faults()["error_rate"] == 0
    # Leave dirt behind for the next run to prove it is cleaned.
    sandbox.set_faults(error_rate=1.0)
    overdue = [i for i in sandbox.invoices() if i["customer"]["external_id"] == "cus_00001"]
    sandbox.create_campaign_payment_request("cus_00001", [overdue[0]["lago_id"]])
    with sandbox.api_client() as client:
        assert client.get("/api/v1/invoices").status_code == 500


@pytest.mark.slow
def test_sandbox_process_starts_answers_and_dies(
    sandbox_process: Callable[..., SandboxProcess],
) -> None:
    started = sandbox_process("--customers", "3", "--invoices-per-customer", "2")
    response = httpx.get(
        f"{started.url}/api/v1/invoices", headers={"Authorization": "Bearer sandbox-key"}
    )
    assert response.json()["meta"]["total_count"] == 6
    assert "Lago sandbox on http://127.0.0.1:" in started.output()
    started.kill()
    assert started.process.returncode is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{started.url}/_sandbox/health", timeout=1.0)

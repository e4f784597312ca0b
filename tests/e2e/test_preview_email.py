"""`dunning preview-email CUSTOMER`: renders the retry-and-email statement, sends nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e import test_sweep_cli
from tests.e2e.test_sweep_cli import Dunning
from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.builders import customer, document, invoice

# The CLI fixtures of the sweep CLI tests, under these names here.
cli_runner = test_sweep_cli.dunning
cli_env = test_sweep_cli.env


def _data(sandbox: SandboxHandle) -> None:
    people = [
        customer("ada", name="Ada <Labs>", billing_configuration={"payment_provider": "stripe"}),
        customer("bob", email=None),
    ]
    rows = [
        invoice("ada", number="INV-1", total_amount_cents=12_345),
        invoice("ada", number="INV-2", currency="EUR"),
        invoice("bob", number="INV-3"),
    ]
    sandbox.reset(data=document(people, rows))
    sandbox.reset_stats()


def test_preview_renders_each_group_and_sends_nothing(
    cli_runner: Dunning, cli_env: dict[str, str], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    _data(sandbox)
    html = tmp_path / "preview.html"
    result = cli_runner("preview-email", "ada", "--html", str(html), env=cli_env)
    assert result.code == 0, result.stderr
    assert "Subject: Invoice INV-1 is overdue" in result.stdout
    assert "123.45 USD" in result.stdout
    assert "To: ada@billing.example" in result.stdout
    # HTML is escaped; the customer name comes from Lago.
    assert "Ada &lt;Labs&gt;" in html.read_text()
    assert sandbox.request_count("POST /api/v1/invoices/{lago_id}/payment_url") == 0
    assert sandbox.request_count("POST /api/v1/invoices/{lago_id}/retry_payment") == 0
    assert not (tmp_path / "data" / "outbox").exists()


def test_preview_as_json_says_when_there_is_no_address(
    cli_runner: Dunning, cli_env: dict[str, str], sandbox: SandboxHandle
) -> None:
    _data(sandbox)
    result = cli_runner("preview-email", "bob", "--json", env=cli_env)
    assert result.code == 0, result.stderr
    [preview] = json.loads(result.stdout)
    assert preview["to"] == []
    assert "INV-3" in preview["text"]


def test_a_customer_with_nothing_owed_is_one_line_and_exit_1(
    cli_runner: Dunning, cli_env: dict[str, str], sandbox: SandboxHandle
) -> None:
    _data(sandbox)
    result = cli_runner("preview-email", "nobody", env=cli_env)
    assert result.code == 1
    assert result.error_lines == [
        "error: customer 'nobody' has no overdue invoice still owed: nothing to preview"
    ]

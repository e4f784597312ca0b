"""`dunning preview-email CUSTOMER`: the email(s) the retry_and_email channel would send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.common import cli_runtime, cli_settings, out
from worker.cli.errors import fail


def preview_email(
    customer: Annotated[str, typer.Argument(help="The customer's external id in Lago.")],
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also write the HTML part(s) to this file.", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Render the dunning email of each of the customer's overdue groups. Sends nothing."""
    from worker.services.preview_email import preview_emails

    settings = cli_settings(quiet_logs=as_json)
    rt = cli_runtime(settings)
    try:
        previews = preview_emails(rt, customer)
    finally:
        rt.close()
    if not previews:
        fail(f"customer {customer!r} has no overdue invoice still owed: nothing to preview")
    if html is not None:
        html.write_text("\n".join(p.rendered.html for p in previews), encoding="utf-8")
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "currency": p.currency,
                        "billing_entity_code": p.billing_entity_code,
                        "policy": p.policy,
                        "channel": p.channel,
                        "attempt_number": p.attempt_number,
                        "to": list(p.to),
                        "subject": p.rendered.subject,
                        "text": p.rendered.text,
                        "html": p.rendered.html,
                    }
                    for p in previews
                ]
            )
        )
        return
    for preview in previews:
        to = ", ".join(preview.to) or "(no email address: this group would be skipped, no_email)"
        out.rule(f"{preview.currency} {preview.billing_entity_code or ''}".strip())
        out.print(f"To: {to}", markup=False, highlight=False)
        out.print(f"Subject: {preview.rendered.subject}", markup=False, highlight=False)
        out.print(
            f"Policy: {preview.policy or '(none)'} (channel {preview.channel}, "
            f"attempt {preview.attempt_number})",
            markup=False,
            highlight=False,
        )
        out.print("")
        out.print(preview.rendered.text, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("preview-email")(preview_email)

"""The `email` chaos stack: the retry_and_email channel on a Lago without the licence.

The embedded stack (SQLite, filesystem broker) against a sandbox without the premium
licence (payment requests answer 403) whose `retry_payment` answers 5xx after taking the
retry 20% of the time, on policy `channel: auto`, with a real SMTP server
(`bench.smtp_sink`, aiosmtpd) that answers slowly and is SIGKILLed mid-send and restarted
while workers die as on the other stacks. The audit (`bench.verify_email`) counts the
emails the server took by Message-ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import smtp_sink
from bench.procs import (
    Child,
    Children,
    base_env,
    free_port,
    python_command,
    wait_for_output,
)
from bench.sandbox_proc import SandboxControl
from bench.stack import REPO_ROOT, Ledger
from bench.verify import groups_to_dun
from bench.verify_email import EmailAudit, audit_emails

#: The sandbox of the email stack: no licence, and 5xx on a fifth of the retries it took.
EMAIL_FAULTS = {"premium": False, "retry_payment_error_rate": 0.2}
#: What the chaos phase counts as activity on this stack (instead of payment request POSTs).
RETRY_ENDPOINT = "POST /api/v1/invoices/{lago_id}/retry_payment"
#: The server notes each message, then waits this long before answering: kills land there.
ANSWER_DELAY_MS = 150
#: A random gap between two kills of the mail server.
SMTP_KILL_GAP_S = (1.5, 4.0)


@dataclass(frozen=True, slots=True)
class SmtpSink:
    child: Child
    port: int
    out: Path

    def env(self) -> dict[str, str]:
        return {
            "DUNNING_SMTP_HOST": "127.0.0.1",
            "DUNNING_SMTP_PORT": str(self.port),
            "DUNNING_SMTP_SECURITY": "none",
            "DUNNING_SMTP_FROM": "Acme Billing <billing@acme.example>",
            "DUNNING_SMTP_TIMEOUT_S": "3",
        }


def start_smtp_sink(children: Children, *, log_dir: Path, data_dir: Path) -> SmtpSink:
    port = free_port()
    out = data_dir / "smtp-received.jsonl"
    child = children.add(
        Child(
            name="smtp",
            command=python_command(
                "-m",
                "bench.smtp_sink",
                "--port",
                str(port),
                "--out",
                str(out),
                "--answer-delay-ms",
                str(ANSWER_DELAY_MS),
            ),
            env=base_env({}, cwd=REPO_ROOT),
            log_path=log_dir / "smtp.log",
        )
    )
    child.start()
    wait_for_output([child], "smtp sink ready", timeout=30)
    return SmtpSink(child, port, out)


def email_audit(
    sandbox: SandboxControl, ledger: Ledger, sink: SmtpSink, requests: int
) -> EmailAudit:
    steps = ledger.channel_steps()
    return audit_emails(
        groups=groups_to_dun(sandbox.invoices()),
        intents=ledger.intents(),
        email_ids={intent: mid for intent, kind, _, mid in steps if kind == "email" and mid},
        received=[message["message_id"] for message in smtp_sink.received(sink.out)],
        retried_invoices=[row["lago_id"] for row in sandbox.invoice_payments()["retries"]],
        unknown_steps=[kind for _, kind, status, _ in steps if status == "unknown"],
        payment_requests=requests,
    )

"""Who acts (the operator behind a pause, resume or retry) and the input checks that the
CLI and the console share."""

from __future__ import annotations

import getpass

from worker.store.operator_actions import Actor

__all__ = ["Actor", "cli_actor", "customer_id_problem", "text_problem"]

MAX_ACTOR_LENGTH = 255


def cli_actor() -> Actor:
    """The operating-system user running the command (`unknown` when it has none)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Actor(name=name[:MAX_ACTOR_LENGTH], source="cli")


#: The ledger keeps external customer ids in 255 characters.
MAX_CUSTOMER_ID_LENGTH = 255


def customer_id_problem(customer: str) -> str | None:
    """Why `customer` (already stripped) cannot name a customer in the ledger, or None."""
    if not customer:
        return "customer id must not be empty"
    if len(customer) > MAX_CUSTOMER_ID_LENGTH:
        return (
            f"customer id must be at most {MAX_CUSTOMER_ID_LENGTH} characters, got {len(customer)}"
        )
    return text_problem("customer id", customer)


def text_problem(what: str, value: str) -> str | None:
    """Control characters are refused (a NUL cannot even be stored by PostgreSQL)."""
    return None if value.isprintable() else f"{what} must not contain control characters"

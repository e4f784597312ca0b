"""Dun a paused customer again, recorded with who and when (`dunning resume`, the console)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from worker.services.operator import Actor
from worker.store import controls
from worker.store.db import write_tx
from worker.store.operator_actions import record_action


def resume_customer(
    engine: Engine, *, external_customer_id: str, now: datetime, actor: Actor
) -> bool:
    """Whether the customer was paused (a hold already over paused nobody). Recorded either
    way, so a console form is used once even when there was nothing to resume."""
    with write_tx(engine) as session:
        control = controls.get_control(session, external_customer_id=external_customer_id)
        was_paused = (
            control is not None
            and control.paused
            and (control.paused_until is None or control.paused_until > now)
        )
        detail = None if was_paused else "was not paused: nothing changed"
        record_action(session, actor, "resume", external_customer_id, at=now, detail=detail)
        if was_paused:
            controls.resume_customer(session, external_customer_id=external_customer_id, now=now)
    return was_paused

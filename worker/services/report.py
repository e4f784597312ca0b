"""`dunning report`: the figures finance and ops look at first, in one read of the ledger.

1. Outstanding and overdue now, per currency, with ageing buckets (newest full sweep).
2. Asked / paid / recovered / rate / median time to pay, per policy (and version), currency
   and attempt; for policies with a holdout, dunned against held-out groups.
3. The action list: needs review, blocked, refused, paused, exhausted (customer and amount).
4. What the next sweep is expected to ask.
Rendered by `report_text` (terminal), `report_csv` and `report_html`; `to_json()` here.
No Lago call: everything comes from the ledger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from sqlalchemy import Engine

from config import Settings
from config.policies import PolicyFileError, load_policies
from worker.read import reading
from worker.read.actions import ActionItem, action_list
from worker.read.next_sweep import NextSweep, next_sweep
from worker.read.outstanding import OverdueNow, overdue_now
from worker.read.recovery import Recovery, recovery
from worker.services.holdout_stats import HoldoutComparison, holdout_comparison
from worker.services.report_format import rate
from worker.services.status import to_jsonable


@dataclass(frozen=True, slots=True)
class FinanceReport:
    generated_at: datetime
    since: datetime | None
    overdue: OverdueNow | None
    recovery: Recovery
    actions: list[ActionItem]
    next_sweep: NextSweep
    holdouts: list[HoldoutComparison] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        overdue = None
        if self.overdue is not None:
            overdue = to_jsonable(asdict(self.overdue))
        rows = [
            {**to_jsonable(asdict(row)), "median_days_to_pay": _days(row.median_days_to_pay)}
            for row in self.recovery.rows
        ]
        return {
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "overdue": overdue,
            "recovery": {
                "rows": rows,
                "totals": {
                    currency: {
                        "asked_cents": asked,
                        "recovered_cents": recovered,
                        "recovery_rate": rate(recovered, asked),
                    }
                    for currency, (asked, recovered) in self.recovery.totals().items()
                },
                "daily": to_jsonable([asdict(item) for item in self.recovery.daily]),
            },
            "actions": to_jsonable([asdict(item) for item in self.actions]),
            "holdouts": [comparison.to_json() for comparison in self.holdouts],
            "next_sweep": {
                "at": self.next_sweep.at.isoformat() if self.next_sweep.at else None,
                "based_on_run": self.next_sweep.based_on_run,
                "totals": {
                    currency: {"requests": n, "amount_cents": cents}
                    for currency, (n, cents) in self.next_sweep.totals().items()
                },
                "asks": to_jsonable([asdict(ask) for ask in self.next_sweep.asks]),
            },
        }


def _days(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def next_run_at(cron: str, now: datetime) -> datetime:
    """The next firing of the sweep's cron after `now` (UTC)."""
    start = now.astimezone(UTC)
    fired: datetime = croniter(cron, start).get_next(datetime)
    return fired.astimezone(UTC)


def next_sweep_at(settings: Settings, now: datetime) -> datetime | None:
    """The next beat tick of the policy file's cron; None when the file cannot be read (the
    report still works: it only reads the ledger)."""
    try:
        return next_run_at(load_policies(settings.policy_file).cron, now)
    except PolicyFileError:
        return None


def build_report(
    engine: Engine,
    *,
    since: datetime | None,
    now: datetime,
    next_sweep_at: datetime | None = None,
) -> FinanceReport:
    with reading(engine) as session:
        report = FinanceReport(
            generated_at=now,
            since=since,
            overdue=overdue_now(session),
            recovery=recovery(session, since=since),
            actions=action_list(session, now=now),
            next_sweep=next_sweep(session, at=next_sweep_at, now=now),
        )
    return replace(report, holdouts=holdout_comparison(engine, since=since))


# -- formatting shared by the renderers ---------------------------------------------------

HOLDOUT_HEADERS = (
    "Policy",
    "Arm",
    "Groups",
    "Paid",
    "Paid share (95% CI)",
    "Recovered / asked",
    "Mean days to pay (95% CI)",
    "Median days",
)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def holdout_cells(comparison: HoldoutComparison) -> list[tuple[str, ...]]:
    """Three rows per policy: dunned, held out, and the difference."""
    rows: list[tuple[str, ...]] = []
    for name, arm in (("dunned", comparison.dunned), ("held out", comparison.held_out)):
        low, high = arm.paid_share_ci
        days = "-"
        if arm.mean_days_to_pay is not None:
            days = f"{arm.mean_days_to_pay:.1f}"
            if arm.mean_days_ci is not None:
                days += f" ({arm.mean_days_ci[0]:.1f} to {arm.mean_days_ci[1]:.1f})"
        rows.append(
            (
                comparison.policy,
                name,
                str(arm.episodes),
                str(arm.paid),
                f"{_pct(arm.paid_share)} ({_pct(low)} to {_pct(high)})",
                _pct(arm.recovered_cents / arm.amount_cents) if arm.amount_cents else "-",
                days,
                f"{arm.median_days_to_pay:.1f}" if arm.median_days_to_pay is not None else "-",
            )
        )
    low, high = comparison.paid_share_difference_ci
    days = "-"
    if comparison.days_difference is not None and comparison.days_difference_ci is not None:
        d_low, d_high = comparison.days_difference_ci
        days = f"{comparison.days_difference:+.1f} ({d_low:+.1f} to {d_high:+.1f})"
    rows.append(
        (
            comparison.policy,
            "difference",
            "",
            "",
            f"{comparison.paid_share_difference * 100:+.1f} pts "
            f"({low * 100:+.1f} to {high * 100:+.1f})",
            "",
            days,
            "",
        )
    )
    return rows

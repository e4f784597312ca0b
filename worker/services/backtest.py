"""`dunning backtest`: replay one or two policy files over Lago's history and compare them.

Each file is replayed at every tick of its own `schedule.cron` between `from` and `to`,
starting with no dunning state (a group already overdue at `from` is first asked at the first
tick that allows it). The figures of the payment requests Lago actually holds for the same
period come along as a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from croniter import croniter

from config.policies import PolicySet
from worker.policy.backtest import replay
from worker.policy.backtest_figures import Figures, difference, figures
from worker.services.backtest_history import History

MAX_TICKS = 200_000

CAVEATS = (
    "A backtest replays what Lago recorded: those payments happened without these touches "
    "(or with the requests that were really sent), so it cannot tell a payment a touch caused "
    "from one that would have come anyway. 'Paid within N days' is an association, not an "
    "uplift: use holdout_percent to measure uplift.",
    "Customer facts (metadata, country, timezone) and credit notes are as Lago has them today; "
    "holds, pauses and this worker's own ledger are not replayed; the replay starts with no "
    "attempts made.",
)


class BacktestError(Exception):
    """Bad backtest input (one line)."""


@dataclass(frozen=True, slots=True)
class PolicyRun:
    label: str
    version_hash: str
    figures: Figures
    decisions: int


@dataclass(frozen=True, slots=True)
class BacktestResult:
    start: datetime
    end: datetime
    history: History
    runs: list[PolicyRun]
    recorded: Figures

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "history": {
                "source": self.history.source,
                "fetched_at": self.history.fetched_at.isoformat(),
                "invoices": len(self.history.invoices),
                "skipped_invoices": self.history.skipped,
                "api_calls": self.history.api_calls,
            },
            "policies": [
                {
                    "file": run.label,
                    "version_hash": run.version_hash,
                    "decisions": run.decisions,
                    **run.figures.to_json(),
                }
                for run in self.runs
            ],
            "recorded_payment_requests": self.recorded.to_json(),
            "caveats": list(CAVEATS),
        }
        if len(self.runs) == 2:
            payload["difference"] = difference(self.runs[0].figures, self.runs[1].figures)
        return payload


def ticks(cron: str, start: datetime, end: datetime) -> list[datetime]:
    """The cron's instants in [start, end] (UTC)."""
    found: list[datetime] = []
    schedule = croniter(cron, start)
    moment = start if croniter.match(cron, start) else schedule.get_next(datetime)
    while moment <= end:
        found.append(moment)
        if len(found) > MAX_TICKS:
            raise BacktestError(
                f"more than {MAX_TICKS} ticks of {cron!r} between --from and --to; "
                "shorten the period"
            )
        moment = schedule.get_next(datetime)
    return found


def run_backtest(
    history: History,
    policy_files: list[tuple[str, PolicySet]],
    *,
    start: datetime,
    end: datetime,
) -> BacktestResult:
    if end <= start:
        raise BacktestError("--to must be after --from")
    invoices = history.invoices
    runs = []
    for label, policies in policy_files:
        replayed = replay(policies, invoices.values(), ticks(policies.cron, start, end))
        runs.append(
            PolicyRun(
                label=label,
                version_hash=policies.version_hash,
                figures=figures(
                    replayed.touches,
                    invoices,
                    history_end=history.fetched_at,
                    held_out_groups=len(replayed.held_out_groups),
                ),
                decisions=replayed.decisions,
            )
        )
    recorded = [touch for touch in history.recorded if start <= touch.at <= end]
    return BacktestResult(
        start=start,
        end=end,
        history=history,
        runs=runs,
        recorded=figures(recorded, invoices, history_end=history.fetched_at),
    )

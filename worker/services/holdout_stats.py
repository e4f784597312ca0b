"""Holdouts in the report: did dunning recover more, or sooner, than leaving customers alone?

Per policy with a holdout, two arms of group *episodes* entered since the report's date:
- dunned: a group's first payment request of a cycle (attempt 1, sent or adopted) and the
  attempts after it until the next cycle; paid when one of them settled as `paid`;
- held out: a holdout entry (the first holdout decision of a group), paid when it settled
  as `paid`.
Both arms are settled by the same reconciliation, at the same sweeps, so days-to-pay is
measured alike (from the first request, or the first holdout decision, to the check that
found the invoices paid).

Figures: the share of episodes paid with a 95% Wilson interval per arm and a Newcombe
interval for the difference; the recovered share of the amount; mean days to pay (paid
episodes) with a normal-approximation interval per arm and for the difference (Welch). The
intervals treat groups as independent; small arms give wide intervals, so read them first.
The statistics are pure functions; `holdout_comparison` reads the ledger.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from worker.store.db import read_session
from worker.store.models import HoldoutEntry, PaymentRequestIntent

Z95 = 1.959964


@dataclass(frozen=True, slots=True)
class Episode:
    amount_cents: int
    recovered_cents: int
    paid: bool
    days_to_pay: float | None  # for paid episodes


@dataclass(frozen=True, slots=True)
class Arm:
    episodes: int
    paid: int
    paid_share: float
    paid_share_ci: tuple[float, float]
    amount_cents: int
    recovered_cents: int
    mean_days_to_pay: float | None
    mean_days_ci: tuple[float, float] | None
    median_days_to_pay: float | None


@dataclass(frozen=True, slots=True)
class HoldoutComparison:
    policy: str
    dunned: Arm
    held_out: Arm
    paid_share_difference: float  # dunned - held out
    paid_share_difference_ci: tuple[float, float]
    days_difference: float | None  # dunned - held out (negative: dunned pay sooner)
    days_difference_ci: tuple[float, float] | None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (0..1); (0, 1) when n is 0."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return (max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator))


def newcombe(a: tuple[int, int], b: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """p_a - p_b and its Newcombe (hybrid Wilson) 95% interval; a and b are (successes, n)."""
    (xa, na), (xb, nb) = a, b
    pa = xa / na if na else 0.0
    pb = xb / nb if nb else 0.0
    la, ua = wilson(xa, na)
    lb, ub = wilson(xb, nb)
    difference = pa - pb
    low = difference - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = difference + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return difference, (max(-1.0, low), min(1.0, high))


def mean_ci(values: Sequence[float]) -> tuple[float, tuple[float, float]] | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = Z95 * statistics.stdev(values) / math.sqrt(len(values))
    return mean, (mean - half, mean + half)


def arm(episodes: Sequence[Episode]) -> Arm:
    paid = [e for e in episodes if e.paid]
    days = [e.days_to_pay for e in paid if e.days_to_pay is not None]
    interval = mean_ci(days)
    return Arm(
        episodes=len(episodes),
        paid=len(paid),
        paid_share=round(len(paid) / len(episodes), 4) if episodes else 0.0,
        paid_share_ci=wilson(len(paid), len(episodes)),
        amount_cents=sum(e.amount_cents for e in episodes),
        recovered_cents=sum(e.recovered_cents for e in episodes),
        mean_days_to_pay=statistics.fmean(days) if days else None,
        mean_days_ci=interval[1] if interval else None,
        median_days_to_pay=statistics.median(days) if days else None,
    )


def compare(policy: str, dunned: Sequence[Episode], held: Sequence[Episode]) -> HoldoutComparison:
    a, b = arm(dunned), arm(held)
    share, share_ci = newcombe((a.paid, a.episodes), (b.paid, b.episodes))
    days_a = [e.days_to_pay for e in dunned if e.paid and e.days_to_pay is not None]
    days_b = [e.days_to_pay for e in held if e.paid and e.days_to_pay is not None]
    days_difference = days_ci = None
    if len(days_a) >= 2 and len(days_b) >= 2:
        days_difference = statistics.fmean(days_a) - statistics.fmean(days_b)
        half = Z95 * math.sqrt(
            statistics.variance(days_a) / len(days_a) + statistics.variance(days_b) / len(days_b)
        )
        days_ci = (days_difference - half, days_difference + half)
    return HoldoutComparison(policy, a, b, round(share, 4), share_ci, days_difference, days_ci)


# -- reading the ledger ---------------------------------------------------------------------


def _days(start: datetime, end: datetime | None) -> float | None:
    return (end - start).total_seconds() / 86400 if end is not None else None


def _episode(chain: Sequence[PaymentRequestIntent]) -> tuple[str, Episode]:
    first = chain[0]
    assert first.sent_at is not None
    paid = [row for row in chain if row.outcome == "paid" and row.resolved_at is not None]
    return first.policy or "(none)", Episode(
        amount_cents=first.amount_cents,
        recovered_cents=max((row.recovered_cents or 0) for row in chain),
        paid=bool(paid),
        days_to_pay=_days(first.sent_at, paid[0].resolved_at) if paid else None,
    )


def dunned_episodes(rows: Sequence[PaymentRequestIntent]) -> list[tuple[str, Episode]]:
    """(policy, episode) per cycle: a group's rows in id order, a new cycle at each attempt 1
    (rows before a group's first attempt 1 in the period are left out)."""
    chains: dict[str, list[list[PaymentRequestIntent]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.id):
        cycles = chains[row.group_key]
        if row.attempt_number == 1:
            cycles.append([row])
        elif cycles:
            cycles[-1].append(row)
    return [_episode(chain) for cycles in chains.values() for chain in cycles]


def holdout_comparison(engine: Engine, *, since: datetime | None) -> list[HoldoutComparison]:
    """One comparison per policy that held customers out since `since`."""
    with read_session(engine) as session:
        query = select(HoldoutEntry)
        if since is not None:
            query = query.where(HoldoutEntry.entered_at >= since)
        entries = session.scalars(query).all()
        policies = sorted({entry.policy or "(none)" for entry in entries})
        if not policies:
            return []
        intents = select(PaymentRequestIntent).where(
            PaymentRequestIntent.status.in_(("sent", "adopted")),
            PaymentRequestIntent.sent_at.is_not(None),
            PaymentRequestIntent.policy.in_(policies),
        )
        if since is not None:
            intents = intents.where(PaymentRequestIntent.sent_at >= since)
        dunned = dunned_episodes(session.scalars(intents).all())
        held = [
            (
                entry.policy or "(none)",
                Episode(
                    amount_cents=entry.amount_cents,
                    recovered_cents=entry.recovered_cents or 0,
                    paid=entry.outcome == "paid" and entry.resolved_at is not None,
                    days_to_pay=_days(entry.entered_at, entry.resolved_at)
                    if entry.outcome == "paid"
                    else None,
                ),
            )
            for entry in entries
        ]
    return [
        compare(
            policy,
            [e for p, e in dunned if p == policy],
            [e for p, e in held if p == policy],
        )
        for policy in policies
    ]

"""Pure dunning decisions: no I/O, no clock (`now` is always passed in)."""

from worker.policy.decide import decide, exhaustion_action
from worker.policy.matching import Selection, match_policy, select_policy
from worker.policy.types import (
    CustomerFacts,
    Decision,
    DecisionKind,
    ExhaustionAction,
    ExhaustionActionKind,
    Group,
    GroupState,
    InvoiceFacts,
    Reason,
    group_key,
)

__all__ = [
    "CustomerFacts",
    "Decision",
    "DecisionKind",
    "ExhaustionAction",
    "ExhaustionActionKind",
    "Group",
    "GroupState",
    "InvoiceFacts",
    "Reason",
    "Selection",
    "decide",
    "exhaustion_action",
    "group_key",
    "match_policy",
    "select_policy",
]

"""Policy selection: first match wins, AND inside match, OR inside exclude, no fall-through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.policy.builders import customer, group, invoice, policy_set
from worker.policy import CustomerFacts, GroupState, Reason, decide, match_policy, select_policy

POLICIES = policy_set(
    """
  - name: enterprise
    match:
      metadata: {segment: enterprise, tier: gold}
      customer_types: [company]
    exclude:
      external_customer_ids: [cust-vip]
      metadata: {dunning: "off"}
    min_overdue_cents: {USD: 0}
  - name: europe
    match:
      countries: [FR, DE]
      currencies: [EUR]
      billing_entity_codes: [acme-eu]
    min_overdue_cents: {EUR: 0}
  - name: catch-all
    match:
      customer_types: [company, individual]
    min_overdue_cents: {USD: 0, EUR: 0}
"""
)
GOLD = {"segment": "enterprise", "tier": "gold"}


@pytest.mark.parametrize(
    ("who", "currency", "entity", "expected"),
    [
        pytest.param(customer(metadata=GOLD), "USD", "acme-us", "enterprise", id="first-wins"),
        pytest.param(customer(metadata={"segment": "enterprise"}), "USD", None, "catch-all",
                     id="metadata-needs-every-pair"),
        pytest.param(customer(metadata=GOLD, customer_type="individual"), "USD", None,
                     "catch-all", id="all-criteria-must-hold"),
        pytest.param(customer(country="fr"), "EUR", "acme-eu", "europe",
                     id="country-case-insensitive"),
        pytest.param(customer(country="FR"), "USD", "acme-eu", "catch-all",
                     id="currency-criterion"),
        pytest.param(customer(country="FR"), "EUR", None, "catch-all",
                     id="missing-entity-never-matches-entity-list"),
        pytest.param(customer(customer_type=None), "USD", None, None, id="no-policy"),
        pytest.param(customer(metadata=GOLD, external_id="cust-vip"), "USD", None, None,
                     id="excluded-by-id-does-not-fall-through"),
    ],
)  # fmt: skip
def test_match_policy(
    who: CustomerFacts, currency: str, entity: str | None, expected: str | None
) -> None:
    policy = match_policy(POLICIES, who, currency, entity)

    assert (policy.name if policy else None) == expected


@pytest.mark.parametrize(
    "who",
    [
        pytest.param(customer(metadata=GOLD, external_id="cust-vip"), id="by-id"),
        pytest.param(customer(metadata={**GOLD, "dunning": "off"}), id="by-metadata"),
    ],
)
def test_exclusion_is_reported_with_its_policy(who: CustomerFacts) -> None:
    selection = select_policy(POLICIES, who, "USD", None)
    decision = decide(POLICIES, group(invoice(), who=who), GroupState(), datetime.now(UTC))

    assert selection.excluded
    assert selection.policy is not None
    assert selection.policy.name == "enterprise"
    assert (decision.reason, decision.policy) == (Reason.EXCLUDED, "enterprise")


def test_metadata_value_must_match_exactly() -> None:
    who = customer(metadata={**GOLD, "dunning": "on"})

    selection = select_policy(POLICIES, who, "USD", None)

    assert not selection.excluded


def test_no_policy_matched_is_a_skip_without_policy() -> None:
    who = customer(customer_type=None)

    decision = decide(POLICIES, group(invoice(), who=who), GroupState(), datetime.now(UTC))

    assert (decision.reason, decision.policy) == (Reason.NO_POLICY_MATCHED, None)

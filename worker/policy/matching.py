"""Which policy governs a customer: the first whose `match` fits; its `exclude` then wins.

`match` criteria are combined with AND (every given criterion must hold, omitted = any);
`exclude` criteria with OR (any one given criterion excludes). Inside `metadata`, `match` needs
every key/value pair to be present on the customer, `exclude` needs just one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from config.policies import Policy, PolicySet, Selector
from worker.policy.types import CustomerFacts


@dataclass(frozen=True, slots=True)
class Selection:
    """The policy whose `match` fits first (if any) and whether its `exclude` applies."""

    policy: Policy | None
    excluded: bool = False


def _criteria(
    selector: Selector,
    customer: CustomerFacts,
    currency: str,
    billing_entity_code: str | None,
) -> list[Callable[[], bool]]:
    """One check per criterion the selector gives (omitted criteria produce none)."""
    checks: list[Callable[[], bool]] = []
    if selector.external_customer_ids is not None:
        ids = selector.external_customer_ids
        checks.append(lambda: customer.external_id in ids)
    if selector.currencies is not None:
        currencies = selector.currencies
        checks.append(lambda: currency.upper() in currencies)
    if selector.billing_entity_codes is not None:
        codes = selector.billing_entity_codes
        checks.append(lambda: billing_entity_code is not None and billing_entity_code in codes)
    if selector.customer_types is not None:
        types = selector.customer_types
        checks.append(lambda: customer.customer_type in types)
    if selector.countries is not None:
        countries = selector.countries
        checks.append(lambda: (customer.country or "").upper() in countries)
    return checks


def _metadata_pairs(selector: Selector, metadata: Mapping[str, str]) -> list[bool]:
    return [metadata.get(key) == value for key, value in (selector.metadata or {}).items()]


def selector_matches(
    selector: Selector, customer: CustomerFacts, currency: str, billing_entity_code: str | None
) -> bool:
    """True when EVERY criterion given in `selector` holds (an empty selector matches all)."""
    checks = _criteria(selector, customer, currency, billing_entity_code)
    return all(_metadata_pairs(selector, customer.metadata)) and all(c() for c in checks)


def selector_excludes(
    selector: Selector, customer: CustomerFacts, currency: str, billing_entity_code: str | None
) -> bool:
    """True when ANY criterion given in `selector` holds (an empty selector excludes none)."""
    checks = _criteria(selector, customer, currency, billing_entity_code)
    return any(_metadata_pairs(selector, customer.metadata)) or any(c() for c in checks)


def select_policy(
    policies: PolicySet, customer: CustomerFacts, currency: str, billing_entity_code: str | None
) -> Selection:
    """The first policy whose `match` fits, and whether that policy excludes the customer."""
    for policy in policies.policies:
        if selector_matches(policy.match, customer, currency, billing_entity_code):
            excluded = policy.exclude is not None and selector_excludes(
                policy.exclude, customer, currency, billing_entity_code
            )
            return Selection(policy=policy, excluded=excluded)
    return Selection(policy=None)


def match_policy(
    policies: PolicySet, customer: CustomerFacts, currency: str, billing_entity_code: str | None
) -> Policy | None:
    """The policy that governs dunning for this customer and currency, or None if not dunned.

    None covers both "no policy matched" and "the first matching policy excludes them"; use
    `select_policy` to tell the two apart.
    """
    selection = select_policy(policies, customer, currency, billing_entity_code)
    return None if selection.excluded else selection.policy

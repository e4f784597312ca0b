"""Dunning policies as code: the YAML schema and its loader.

A policy file is an ordered list of policies. For each group of overdue invoices (one customer,
currency and billing entity) the FIRST policy whose `match` fits the customer is the one that
governs it; customers no policy matches are not dunned. Example (see config/policies.yaml):

    version: 1                      # required; the only version so far
    schedule:
      cron: "*/15 * * * *"          # beat cadence in UTC (default every 15 minutes); the
                                    # accepted forms are those of config/cron.py
    policies:
      - name: enterprise            # unique; recorded with every decision
        match:                      # every given criterion must hold; omitted = any
          metadata: {segment: enterprise}   # customer metadata key/value pairs (all must hold)
          external_customer_ids: [cust-1]
          currencies: [USD, EUR]            # ISO 4217 codes Lago accepts
          billing_entity_codes: [acme-us]
          customer_types: [company]         # company | individual
          countries: [US, FR]               # ISO 3166-1 alpha-2
        exclude:                    # ANY given criterion excludes the customer (same keys)
          external_customer_ids: [cust-2]
          metadata: {dunning: "off"}
        min_overdue_cents: {USD: 5000, EUR: 5000}  # required; a currency not listed is NOT dunned
        grace_days: 3               # default 0; see below
        days_between_attempts: 3    # default 1; next attempt strictly after last + this many days
        max_attempts: 3             # default 1; or per currency {USD: 3, EUR: 2}
        send_window:                # default none (any time)
          start_hour: 9             # 0..23, local time of the customer (applicable_timezone)
          end_hour: 18              # 1..24, exclusive; start_hour < end_hour
          weekdays: [mon, tue, wed, thu, fri]   # default every day
          fallback_timezone: UTC    # used when the customer's timezone is missing or invalid
        email: null                 # null = the customer's email; an address; or
                                    # {metadata_key: finance_email} (customer metadata)
        on_exhausted: {action: stop}            # or {action: webhook, url: "https://..."}
        version: 3                  # optional label recorded with every decision and intent
        contact_cap: {max_requests: 1, per_days: 3}   # per customer, all currencies/entities
        holdout_percent: 5          # share of customers kept out of dunning (needs holdout_salt)
        channel: auto               # payment_request | retry_and_email | auto (config/channels.py)
      - name: stepped
        min_overdue_cents: {EUR: 1000}
        steps:                      # instead of days_between_attempts / max_attempts
          - {after_days: 0}
          - {after_days: 7, email: {metadata_key: finance_email}}
          - {after_days: 14, send_window: {start_hour: 9, end_hour: 12, skip_holidays: true}}
    holdout_salt: "2026-q4"         # changes which customers are held out; keep it stable

Rules that are not obvious:
- `steps[i].after_days` counts whole days after the OLDEST invoice's due date has ended in the
  customer's timezone (like grace_days; 0 = the first day the invoice is overdue). A step is
  never before the grace period ends and never on the same local day as the previous attempt;
  each step must come strictly later than the one before. Attempts = number of steps.
- `send_window.skip_holidays` skips the public holidays (the `holidays` package) of the
  customer's country (Lago's `country`), or of `holiday_country` when given, in the
  customer's timezone.
- `holdout_percent` keeps a stable share of customers out of dunning (decision `holdout`): a
  hash of `holdout_salt` and the customer id, so the same customers stay out sweep after
  sweep; only customers not yet in a dunning cycle are held out.
- A customer whose first matching policy also `exclude`s them is NOT dunned (no fall-through to
  later policies): an exclusion always wins, so writing one can never start dunning someone.
- `grace_days` counts whole days after the OLDEST invoice's `payment_due_date` has ended in the
  customer's timezone: due on the 1st with grace 3 means eligible from the 5th, 00:00 local.
- The threshold compares the group's amount still due (net of partial payments), `>=` min.

`load_policies(path)` returns a frozen `PolicySet` or raises `PolicyFileError`, whose message is
one line: the file, the path inside it and what to do, e.g.
`policies.yaml: policies[1].min_overdue_cents.USD: must be >= 0 (got -5)`.
Files over 1 MiB are refused unread; YAML anchors and aliases are allowed but a document that
expands to more than 200,000 values through them is refused before it is built
(config/bounded_yaml.py).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from config.bounded_yaml import YamlExpansionError, load_bounded
from config.channels import Channel, EmailScope, EmailTemplate
from config.cron import CronError, parse_cron

# ISO 4217 codes Lago accepts (Lago's `Currency` enum); invoices only ever come in these.
# fmt: off
CURRENCIES: frozenset[str] = frozenset([
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLF", "CLP", "CNY", "COP", "CRC", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ETB",
    "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL",
    "HRK", "HTG", "HUF", "IDR", "ILS", "INR", "ISK", "JMD", "JPY", "KES", "KGS", "KHR", "KMF",
    "KRW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK",
    "MNT", "MOP", "MRO", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
    "RWF", "SAR", "SBD", "SCR", "SEK", "SGD", "SHP", "SLL", "SOS", "SRD", "STD", "SZL", "THB",
    "TJS", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VND", "VUV",
    "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW",
])
# fmt: on

# ISO 3166-1 alpha-2 codes (Lago's `Country` enum).
# fmt: off
COUNTRIES: frozenset[str] = frozenset([
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX",
    "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
    "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK",
    "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM",
    "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
    "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN",
    "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN",
    "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV",
    "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ",
    "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI",
    "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
    "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC",
    "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
    "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR",
    "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
])
# fmt: on

WeekdayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[WeekdayName, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_CRON = "*/15 * * * *"
MAX_DAYS = 3650  # caps day counts so date arithmetic can never overflow
#: A policy file is a few kilobytes; anything past this is refused before it is parsed.
MAX_FILE_BYTES = 1024 * 1024
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PolicyFileError(Exception):
    """A policy file that cannot be used. `str()` is one line: file, location and the fix."""

    def __init__(self, file: str, location: str, problem: str) -> None:
        self.file = file
        self.location = location
        self.problem = problem
        where = f"{file}: {location}" if location else file
        super().__init__(f"{where}: {problem}")


# ---------------------------------------------------------------------------------------------
# Field types


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _check_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"unknown currency {code!r}; use an ISO 4217 code such as USD or EUR")
    return code


def _check_country(code: str) -> str:
    if code not in COUNTRIES:
        raise ValueError(f"unknown country {code!r}; use an ISO 3166-1 alpha-2 code such as US")
    return code


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name such as Europe/Paris or UTC"
        ) from None
    return name


_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(value: object) -> object:
    """Accept `mon` or `monday` in any case; leave anything else for the Literal to reject."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _FULL_WEEKDAYS:
            return WEEKDAYS[_FULL_WEEKDAYS.index(lowered)]
        return lowered
    return value


def _check_cron(expression: str) -> str:
    """Exactly what beat and the tick slot can run: they use the same parser."""
    try:
        parse_cron(expression)
    except CronError as exc:
        raise ValueError(
            f"invalid cron {_short(expression)}: {exc}; use 5 fields "
            "'minute hour day month weekday', e.g. '*/15 * * * *'"
        ) from None
    return expression


def is_email(text: str) -> bool:
    """True for something shaped like an email address (name@domain.tld)."""
    return bool(_EMAIL.match(text))


def _check_email(address: str) -> str:
    if not is_email(address):
        raise ValueError(f"invalid email {address!r}; use an address like billing@example.com")
    return address


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"invalid webhook url {url!r}; use an absolute http(s) URL")
    return url


def _check_holiday_country(code: str) -> str:
    import holidays  # here: only a policy that names a holiday country needs the package

    if code not in holidays.list_supported_countries():
        raise ValueError(f"no public holiday calendar for {code!r}; choose another country")
    return code


def _label(value: object) -> object:
    """A version label may be written as a number (`version: 3`); it is kept as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_label(label: str) -> str:
    if not label or label != label.strip() or len(label) > 32:
        raise ValueError("version must be 1-32 characters without surrounding spaces")
    return label


def _check_name(name: str) -> str:
    if not name or name != name.strip() or len(name) > 64:
        raise ValueError("policy name must be 1-64 characters without surrounding spaces")
    return name


Currency = Annotated[str, BeforeValidator(_upper), AfterValidator(_check_currency)]
Country = Annotated[str, BeforeValidator(_upper), AfterValidator(_check_country)]
TimezoneName = Annotated[str, AfterValidator(_check_timezone)]
Weekday = Annotated[WeekdayName, BeforeValidator(_weekday)]
CustomerType = Literal["company", "individual"]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Cents = Annotated[int, Strict(), Field(ge=0)]
Days = Annotated[int, Strict(), Field(ge=0, le=MAX_DAYS)]
PositiveDays = Annotated[int, Strict(), Field(ge=1, le=MAX_DAYS)]
AttemptCount = Annotated[int, Strict(), Field(ge=1, le=1000)]
HolidayCountry = Annotated[Country, AfterValidator(_check_holiday_country)]
VersionLabel = Annotated[str, BeforeValidator(_label), AfterValidator(_check_label)]
EmailAddress = Annotated[str, AfterValidator(_check_email)]


def _per_currency_or_single(value: object) -> str:
    return "per_currency" if isinstance(value, Mapping) else "single"


MaxAttempts = Annotated[
    Annotated[AttemptCount, Tag("single")]
    | Annotated[dict[Currency, AttemptCount], Tag("per_currency")],
    Discriminator(_per_currency_or_single),
]
_UNION_TAGS = {"single", "per_currency", "address", "metadata"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Schema


class Selector(_Strict):
    """Customer criteria. In `match` all given criteria must hold; in `exclude` any one does."""

    metadata: dict[NonEmptyStr, str] | None = None
    external_customer_ids: tuple[NonEmptyStr, ...] | None = Field(default=None, min_length=1)
    currencies: tuple[Currency, ...] | None = Field(default=None, min_length=1)
    billing_entity_codes: tuple[NonEmptyStr, ...] | None = Field(default=None, min_length=1)
    customer_types: tuple[CustomerType, ...] | None = Field(default=None, min_length=1)
    countries: tuple[Country, ...] | None = Field(default=None, min_length=1)

    def describe(self) -> str:
        """A short human summary, e.g. `currencies=USD,EUR metadata.segment=enterprise`."""
        parts: list[str] = []
        if self.metadata:
            parts.extend(f"metadata.{key}={value}" for key, value in self.metadata.items())
        for label, values in (
            ("ids", self.external_customer_ids),
            ("currencies", self.currencies),
            ("entities", self.billing_entity_codes),
            ("types", self.customer_types),
            ("countries", self.countries),
        ):
            if values:
                parts.append(f"{label}={','.join(values)}")
        return " ".join(parts) if parts else "any"


class SendWindow(_Strict):
    """Local hours [start_hour, end_hour) on the given weekdays, in the customer's timezone."""

    start_hour: Annotated[int, Strict(), Field(ge=0, le=23)]
    end_hour: Annotated[int, Strict(), Field(ge=1, le=24)]
    weekdays: tuple[Weekday, ...] = Field(default=WEEKDAYS, min_length=1)
    fallback_timezone: TimezoneName = "UTC"
    skip_holidays: bool = False
    holiday_country: HolidayCountry | None = None

    @model_validator(mode="after")
    def _start_before_end(self) -> SendWindow:
        if self.start_hour >= self.end_hour:
            raise ValueError(
                f"start_hour ({self.start_hour}) must be before end_hour ({self.end_hour})"
            )
        if self.holiday_country is not None and not self.skip_holidays:
            raise ValueError("holiday_country is only used with skip_holidays: true; add it")
        return self

    @property
    def weekday_numbers(self) -> frozenset[int]:
        """Weekdays as `date.weekday()` numbers (monday = 0)."""
        return frozenset(WEEKDAYS.index(day) for day in self.weekdays)

    def describe(self) -> str:
        numbers = sorted(self.weekday_numbers)
        if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
            days = f"{WEEKDAYS[numbers[0]]}-{WEEKDAYS[numbers[-1]]}"
        else:
            days = ",".join(WEEKDAYS[number] for number in numbers)
        text = f"{self.start_hour:02d}-{self.end_hour:02d}h {days}"
        if self.skip_holidays:
            text += f" no holidays ({self.holiday_country or 'customer country'})"
        return text


class EmailFromMetadata(_Strict):
    """Send to the address in this customer metadata key (e.g. a finance contact); the
    customer's email (or the policy's) when the key is missing or not an address."""

    metadata_key: NonEmptyStr

    def describe(self) -> str:
        return f"metadata.{self.metadata_key}"


def _address_or_metadata(value: object) -> str:
    return "metadata" if isinstance(value, Mapping) else "address"


EmailTarget = Annotated[
    Annotated[EmailAddress, Tag("address")] | Annotated[EmailFromMetadata, Tag("metadata")],
    Discriminator(_address_or_metadata),
]


def describe_email(email: EmailTarget | None) -> str:
    if email is None:
        return "customer email"
    return email if isinstance(email, str) else email.describe()


class Step(_Strict):
    """One attempt of a step schedule: `after_days` after the oldest invoice's due date."""

    after_days: Days
    email: EmailTarget | None = None
    send_window: SendWindow | None = None
    email_template: EmailTemplate | None = None

    def describe(self) -> str:
        text = f"day {self.after_days}"
        if self.email is not None:
            text += f" to {describe_email(self.email)}"
        if self.send_window is not None:
            text += f" ({self.send_window.describe()})"
        return text


class ContactCap(_Strict):
    """At most `max_requests` payment requests per customer in any `per_days` rolling days,
    counted across all the customer's currencies and billing entities."""

    max_requests: Annotated[int, Strict(), Field(ge=1, le=1000)]
    per_days: PositiveDays

    def describe(self) -> str:
        return f"{self.max_requests} per {self.per_days}d"


class OnExhausted(_Strict):
    """What to do once the attempts are used up: `stop`, or `webhook` to `url` as well."""

    action: Literal["stop", "webhook"] = "stop"
    url: Annotated[str, AfterValidator(_check_url)] | None = None

    @model_validator(mode="after")
    def _url_iff_webhook(self) -> OnExhausted:
        if self.action == "webhook" and self.url is None:
            raise ValueError("action 'webhook' needs a url; add url: https://...")
        if self.action == "stop" and self.url is not None:
            raise ValueError("url is only used with action 'webhook'; remove it")
        return self

    def describe(self) -> str:
        return f"webhook {self.url}" if self.action == "webhook" else "stop"


class Policy(_Strict):
    """One dunning policy. See the module docstring for the meaning of each key."""

    name: Annotated[str, AfterValidator(_check_name)]
    match: Selector = Selector()
    exclude: Selector | None = None
    min_overdue_cents: dict[Currency, Cents] = Field(min_length=1)
    grace_days: Days = 0
    days_between_attempts: PositiveDays = 1
    max_attempts: MaxAttempts = 1
    send_window: SendWindow | None = None
    email: EmailTarget | None = None
    on_exhausted: OnExhausted = OnExhausted()
    steps: tuple[Step, ...] | None = Field(default=None, min_length=1, max_length=100)
    contact_cap: ContactCap | None = None
    holdout_percent: Annotated[float, Field(ge=0, le=50)] = 0
    version: VersionLabel | None = None
    channel: Channel = "payment_request"
    email_scope: EmailScope = "group"
    email_template: EmailTemplate | None = None

    def template_for(self, attempt_number: int) -> EmailTemplate | None:
        """The email template of attempt `attempt_number` (1-based): the step's over the
        policy's."""
        if self.steps is not None and 1 <= attempt_number <= len(self.steps):
            step = self.steps[attempt_number - 1].email_template
            if step is not None:
                return step.over(self.email_template)
        return self.email_template

    def threshold_for(self, currency: str) -> int | None:
        """Minimum overdue amount (cents) for `currency`, or None if it is not dunned."""
        return self.min_overdue_cents.get(currency)

    def max_attempts_for(self, currency: str) -> int:
        """Maximum number of attempts for a group in `currency` (a configured currency)."""
        if self.steps is not None:
            return len(self.steps)
        if isinstance(self.max_attempts, dict):
            return self.max_attempts.get(currency, 0)
        return self.max_attempts


class Schedule(_Strict):
    cron: Annotated[str, AfterValidator(_check_cron)] = DEFAULT_CRON


class PolicyDocument(_Strict):
    """The whole file as written."""

    version: Literal[1]
    schedule: Schedule = Schedule()
    policies: tuple[Policy, ...]
    holdout_salt: Annotated[str, Field(min_length=1, max_length=200)] | None = None


def _cross_field_problem(document: PolicyDocument) -> tuple[str, str] | None:
    """Rules spanning several keys, as (location, problem); checked after the schema passes."""
    if not document.policies:
        return "policies", "must list at least one policy"
    seen: set[str] = set()
    for index, policy in enumerate(document.policies):
        where = f"policies[{index}]"
        if policy.name in seen:
            return f"{where}.name", f"duplicate policy name {policy.name!r}; names must be unique"
        seen.add(policy.name)
        problem = _steps_problem(policy)
        if problem is not None:
            return f"{where}.{problem[0]}", problem[1]
        if policy.holdout_percent > 0 and document.holdout_salt is None:
            return f"{where}.holdout_percent", (
                "needs holdout_salt at the top of the file (any text, kept stable), "
                "so the same customers stay held out"
            )
        if isinstance(policy.max_attempts, dict):
            configured = set(policy.min_overdue_cents)
            missing = sorted(configured - set(policy.max_attempts))
            extra = sorted(set(policy.max_attempts) - configured)
            if missing:
                return f"{where}.max_attempts", (
                    f"no entry for {', '.join(missing)}; add one for each currency in "
                    "min_overdue_cents, or use a single number"
                )
            if extra:
                return f"{where}.max_attempts.{extra[0]}", (
                    "currency not in min_overdue_cents; remove it or add a threshold for it"
                )
    return None


def _steps_problem(policy: Policy) -> tuple[str, str] | None:
    if policy.steps is None:
        return None
    clashing = sorted({"days_between_attempts", "max_attempts"} & policy.model_fields_set)
    if clashing:
        return clashing[0], "steps already set the schedule; remove this key or the steps"
    for index in range(1, len(policy.steps)):
        before, after = policy.steps[index - 1].after_days, policy.steps[index].after_days
        if after <= before:
            return f"steps[{index}].after_days", (
                f"must be greater than the step before ({before}); one step per day at most"
            )
    return None


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A validated policy file. `version_hash` identifies the exact file bytes used;
    `document` keeps those bytes (the ledger stores them so in-flight groups can be held to
    the schedule they started under)."""

    policies: tuple[Policy, ...]
    cron: str
    version_hash: str
    source: str
    holdout_salt: str | None = None
    document: bytes = field(default=b"", repr=False, compare=False)

    def by_name(self, name: str) -> Policy | None:
        return next((policy for policy in self.policies if policy.name == name), None)


# ---------------------------------------------------------------------------------------------
# Loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in mapping
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; keep only one", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def version_hash(data: bytes) -> str:
    """Short sha256 of the file bytes, recorded with each sweep."""
    return hashlib.sha256(data).hexdigest()[:12]


def load_policies(path: str | Path) -> PolicySet:
    """Read and validate a policy file. Raises `PolicyFileError` (one-line message)."""
    file = Path(path)
    name = str(file)
    try:
        with file.open("rb") as handle:  # never more than the cap: /dev/zero must not hang
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise PolicyFileError(name, "", "file not found; check the path") from None
    except IsADirectoryError:
        raise PolicyFileError(name, "", "is a directory; point to a YAML file") from None
    except PermissionError:
        raise PolicyFileError(name, "", "permission denied; make the file readable") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PolicyFileError(name, "", f"cannot be read ({reason}); check the file") from None
    return parse_policies(data, source=name)


def parse_policies(data: bytes | str, source: str = "<policies>") -> PolicySet:
    """Validate policy YAML given as bytes or text. Raises `PolicyFileError`."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyFileError(
            source, "", "is larger than 1 MiB; a policy file is a few kilobytes: check the path"
        )
    document = _parse_yaml(raw, source)
    if not isinstance(document, dict):
        kind = "empty" if document is None else f"a {type(document).__name__}"
        raise PolicyFileError(
            source, "", f"is {kind}, not a mapping; start with 'version: 1' and 'policies:'"
        )
    try:
        parsed = PolicyDocument.model_validate(document)
    except ValidationError as exc:
        raise _to_file_error(source, exc) from None
    problem = _cross_field_problem(parsed)
    if problem is not None:
        raise PolicyFileError(source, *problem)
    return PolicySet(
        policies=parsed.policies,
        cron=parsed.schedule.cron,
        version_hash=version_hash(raw),
        source=source,
        holdout_salt=parsed.holdout_salt,
        document=raw,
    )


def _parse_yaml(raw: bytes, source: str) -> object:
    try:
        return load_bounded(raw, _UniqueKeyLoader)
    except YamlExpansionError as exc:
        raise PolicyFileError(source, "", str(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise PolicyFileError(source, where, f"invalid YAML: {problem}; fix the syntax") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise PolicyFileError(source, "", f"invalid YAML: {problem}") from None
    except (ValueError, OverflowError) as exc:  # e.g. an impossible date such as 2024-13-45
        raise PolicyFileError(source, "", f"invalid YAML value: {exc}; quote it") from None
    except RecursionError:
        raise PolicyFileError(source, "", "YAML nested too deeply; simplify it") from None


# ---------------------------------------------------------------------------------------------
# Turning validation errors into one actionable line


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The models an annotation mentions, however nested (unions, tuples, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for inner in (*getattr(annotation, "__args__", ()), getattr(annotation, "__origin__", None)):
        if inner is not None and inner is not annotation:
            found.extend(_models_in(inner))
    return found


def _field_names(model: type[BaseModel], into: set[str]) -> set[str]:
    for field_name, info in model.model_fields.items():
        into.add(field_name)
        for nested in _models_in(info.annotation):
            if nested is not model:
                _field_names(nested, into)
    return into


_KNOWN_KEYS = sorted(_field_names(PolicyDocument, set()))


def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    previous: int | str | None = None
    for part in loc:
        if previous in {"max_attempts", "email"} and part in _UNION_TAGS:
            previous = part
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            text += " (key)"
        else:
            text += f".{part}" if text else str(part)
        previous = part
    return text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _problem(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = _short(error.get("input"))
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error["loc"] else ""
        close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key; remove it or fix its spelling{hint}"
    if kind == "missing":
        return "required key is missing; add it"
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}[kind]  # fmt: skip
        bound = next(iter(ctx.values()), "")
        return f"must be {op} {bound} (got {got})"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"must be a whole number (got {got})"
    if kind == "string_type":
        return f'must be text (got {got}); quote it in YAML, e.g. "off"'
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"must be a mapping of key: value (got {got})"
    if kind in {"tuple_type", "list_type"}:
        return f"must be a list, e.g. [a, b] (got {got})"
    if kind == "too_short":
        return "must not be empty; list at least one value or omit the key"
    if kind == "bool_type":
        return f"must be true or false (got {got})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')} (got {got})"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "union_tag_invalid":
        return f"has the wrong shape (got {got})"
    return f"{error['msg']} (got {got})"


def _to_file_error(source: str, exc: ValidationError) -> PolicyFileError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    problem = " ".join(_problem(first).split())
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return PolicyFileError(source, _format_location(first["loc"]) or "(top level)", problem)

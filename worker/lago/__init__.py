"""The Lago API client: the only package of the project that speaks HTTP to Lago."""

# ruff: noqa: E402  (the imports follow the one statement that must come before httpx)

import sys

# Importing httpx imports its command-line client too (`httpx._main`: click, pygments, rich's
# syntax highlighting; about 35 ms) whenever those packages are installed, as they are here.
# The worker never runs it: marked absent before httpx is first imported, httpx keeps its
# stub `main` instead. (If httpx is already imported, this changes nothing.)
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"

from worker.lago.client import LagoClient
from worker.lago.errors import (
    FeatureUnavailableError,
    LagoAmbiguousError,
    LagoBadRequestError,
    LagoConnectionError,
    LagoError,
    LagoForbiddenError,
    LagoMalformedResponseError,
    LagoMethodNotAllowedError,
    LagoNotFoundError,
    LagoRateLimitedError,
    LagoRequestError,
    LagoServerError,
    LagoStatusError,
    LagoTimeoutError,
    LagoUnauthorizedError,
    LagoUnprocessableError,
)
from worker.lago.filters import InvoiceFilters
from worker.lago.models import (
    Customer,
    Invoice,
    MalformedRecord,
    Payment,
    PaymentReceipt,
    PaymentRequest,
)
from worker.lago.ratelimit import (
    RateLimiter,
    RateLimiterError,
    TokenBucket,
    Unlimited,
    limiter_from_settings,
)
from worker.lago.retry import RetryPolicy

__all__ = [
    "Customer",
    "FeatureUnavailableError",
    "Invoice",
    "InvoiceFilters",
    "LagoAmbiguousError",
    "LagoBadRequestError",
    "LagoClient",
    "LagoConnectionError",
    "LagoError",
    "LagoForbiddenError",
    "LagoMalformedResponseError",
    "LagoMethodNotAllowedError",
    "LagoNotFoundError",
    "LagoRateLimitedError",
    "LagoRequestError",
    "LagoServerError",
    "LagoStatusError",
    "LagoTimeoutError",
    "LagoUnauthorizedError",
    "LagoUnprocessableError",
    "MalformedRecord",
    "Payment",
    "PaymentReceipt",
    "PaymentRequest",
    "RateLimiter",
    "RateLimiterError",
    "RetryPolicy",
    "TokenBucket",
    "Unlimited",
    "limiter_from_settings",
]

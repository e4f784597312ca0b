"""The Lago API client: the only package of the project that speaks HTTP to Lago."""

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

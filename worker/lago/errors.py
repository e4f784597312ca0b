"""The error tree of the Lago client. It mirrors HTTP so callers can branch on the class.

    LagoError                          every failure of a Lago call
    ├── LagoConnectionError            could not connect (the request was never sent), or,
    │   │                              on a GET only, the connection dropped mid-answer
    │   └── LagoRequestError           the request could not even be written (an invalid
    │                                  header value or URL): never sent, not a network fault
    ├── LagoTimeoutError               no answer in time (a GET may be retried)
    ├── LagoMalformedResponseError     the answer is not JSON or not the documented shape
    ├── LagoAmbiguousError             a POST whose outcome is unknown (timeout, dropped
    │                                  connection, 5xx): it may have taken effect in Lago
    └── LagoStatusError                Lago answered with an error status
        ├── LagoBadRequestError        400
        ├── LagoUnauthorizedError      401  the API key was rejected
        ├── LagoForbiddenError         403  (FeatureUnavailableError: no premium licence)
        ├── LagoNotFoundError          404  code e.g. customer_not_found, invoice_not_found
        ├── LagoMethodNotAllowedError  405  code e.g. invoices_not_overdue
        ├── LagoUnprocessableError     422  code validation_errors + error_details
        ├── LagoRateLimitedError       429  retry_after_s from the rate-limit headers
        └── LagoServerError            5xx

`transient` says whether the same call may succeed if tried again later. Messages never
contain the API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class LagoError(Exception):
    """Base class. `endpoint` is e.g. "POST /api/v1/payment_requests"."""

    transient: bool = False

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors defeat pickle's default (`cls(*args)`): Celery would
        # then wrap a failed task's error as `UnpickleableExceptionWrapper(...)`.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[LagoError], message: str, state: dict[str, Any]) -> LagoError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class LagoConnectionError(LagoError):
    transient = True


class LagoRequestError(LagoConnectionError):
    """Refused before it left this process (e.g. a header value HTTP forbids). Its message
    never quotes the request: a header could be the API key."""

    transient = False


class LagoTimeoutError(LagoError):
    transient = True


class LagoMalformedResponseError(LagoError):
    """`field` names the offending location (e.g. "invoices[3].total_due_amount_cents")."""

    def __init__(self, message: str, *, endpoint: str, field: str | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.field = field


class LagoAmbiguousError(LagoError):
    """A non-idempotent call may or may not have taken effect: reconcile before re-sending."""

    transient = True

    def __init__(self, message: str, *, endpoint: str, cause: LagoError | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.cause = cause


class LagoStatusError(LagoError):
    """Lago answered with an error status; keeps Lago's `code` and `error_details`."""

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int,
        code: str | None = None,
        error_details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status
        self.code = code
        self.error_details: Mapping[str, Any] = error_details or {}

    def __str__(self) -> str:
        code = f" ({self.code})" if self.code else ""
        return f"{self.endpoint}: HTTP {self.status}{code}: {self.message}"


class LagoBadRequestError(LagoStatusError):
    pass


class LagoUnauthorizedError(LagoStatusError):
    pass


class LagoForbiddenError(LagoStatusError):
    pass


class FeatureUnavailableError(LagoForbiddenError):
    """403 feature_unavailable: the Lago instance lacks the premium licence."""


class LagoNotFoundError(LagoStatusError):
    pass


class LagoMethodNotAllowedError(LagoStatusError):
    pass


class LagoUnprocessableError(LagoStatusError):
    pass


class LagoRateLimitedError(LagoStatusError):
    transient = True

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int = 429,
        code: str | None = None,
        error_details: Mapping[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            message, endpoint=endpoint, status=status, code=code, error_details=error_details
        )
        self.retry_after_s = retry_after_s


class LagoServerError(LagoStatusError):
    transient = True


# Codes Lago uses on POST /payment_requests that mean "not now, maybe later".
RETRY_LATER_CODES = frozenset({"invoices_not_ready_for_payment_processing"})

# The coded refusals of POST /payment_requests. Lago sends them as 405 with `code`; a newer
# branch sends some as 422 `validation_errors` with `error_details: {"base": [code]}`. The
# client puts the specific code in `LagoStatusError.code` for both shapes.
PAYMENT_REQUEST_REFUSAL_CODES = frozenset(
    {
        "invoices_not_overdue",
        "invoices_have_different_currencies",
        "invoices_have_different_billing_entities",
        "invoices_not_ready_for_payment_processing",
    }
)

#: The single-validation refusals of `POST /invoices/{lago_id}/payment_url`
#: (`Invoices::Payments::GeneratePaymentUrlService`): Lago cannot make a link for it.
PAYMENT_URL_REFUSAL_CODES = frozenset(
    {
        "no_linked_payment_provider",
        "invalid_payment_provider",
        "invalid_invoice_status_or_payment_status",
        "missing_payment_provider",
        "missing_payment_provider_customer",
    }
)

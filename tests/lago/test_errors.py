"""Error responses map to the error tree with Lago's code and details kept; no secrets leak."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from tests.lago.fakes import API_KEY, Handler, make_client
from worker.lago import (
    FeatureUnavailableError,
    LagoBadRequestError,
    LagoClient,
    LagoConnectionError,
    LagoError,
    LagoForbiddenError,
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


def _answer(status: int, body: object = None, text: str | None = None) -> Handler:
    def handler(_: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)

    return handler


def _error_of(status: int, body: object = None, *, text: str | None = None) -> LagoError:
    with (
        make_client(_answer(status, body, text), max_retries=0) as client,
        pytest.raises(LagoError) as caught,
    ):
        client.create_payment_request("cust-1", ["inv-1"])
    return caught.value


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (
            400,
            {"status": 400, "error": "BadRequest: param is missing: payment_request"},
            LagoBadRequestError,
            None,
        ),
        (401, {"status": 401, "error": "Unauthorized"}, LagoUnauthorizedError, None),
        (
            403,
            {"status": 403, "error": "Forbidden", "code": "feature_unavailable"},
            FeatureUnavailableError,
            "feature_unavailable",
        ),
        (
            403,
            {
                "status": 403,
                "error": "Forbidden",
                "code": "write_action_not_allowed_for_payment_request",
            },
            LagoForbiddenError,
            "write_action_not_allowed_for_payment_request",
        ),
        (
            404,
            {"status": 404, "error": "Not Found", "code": "customer_not_found"},
            LagoNotFoundError,
            "customer_not_found",
        ),
        (
            405,
            {"status": 405, "error": "Method Not Allowed", "code": "invoices_not_overdue"},
            LagoMethodNotAllowedError,
            "invoices_not_overdue",
        ),
        (
            422,
            {
                "status": 422,
                "error": "Unprocessable Entity",
                "code": "validation_errors",
                "error_details": {"email": ["invalid_format"]},
            },
            LagoUnprocessableError,
            "validation_errors",
        ),
        (429, {"status": 429, "error": "Too Many Requests"}, LagoRateLimitedError, None),
        (418, {"status": 418, "error": "I'm a teapot"}, LagoStatusError, None),
    ],
)
def test_status_maps_to_its_class_and_keeps_the_code(
    status: int, body: dict[str, object], cls: type[LagoStatusError], code: str | None
) -> None:
    error = _error_of(status, body)
    assert type(error) is cls
    assert isinstance(error, LagoStatusError)
    assert error.status == status
    assert error.code == code
    assert error.endpoint == "POST /api/v1/payment_requests"
    assert "\n" not in str(error)


def test_server_errors_on_get_are_server_errors() -> None:
    with (
        make_client(
            _answer(500, {"status": 500, "error": "Internal Server Error"}), max_retries=0
        ) as client,
        pytest.raises(LagoServerError) as caught,
    ):
        client.get_invoice("inv-1")
    assert caught.value.status == 500
    assert caught.value.transient


def test_unauthorized_says_what_to_check() -> None:
    error = _error_of(401, {"status": 401, "error": "Unauthorized"})
    assert str(error) == (
        "POST /api/v1/payment_requests: HTTP 401: the API key was rejected (check LAGO_API_KEY)"
    )


def test_feature_unavailable_explains_the_licence() -> None:
    error = _error_of(403, {"status": 403, "error": "Forbidden", "code": "feature_unavailable"})
    assert "lacks the premium licence that payment requests need" in str(error)


def test_unprocessable_keeps_error_details() -> None:
    details = {"email": ["invalid_format"], "lago_invoice_ids": ["too_many"]}
    error = _error_of(
        422,
        {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": details,
        },
    )
    assert isinstance(error, LagoUnprocessableError)
    assert error.error_details == details
    assert "email: invalid_format" in str(error)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            405,
            {
                "status": 405,
                "error": "Method Not Allowed",
                "code": "invoices_have_different_billing_entities",
            },
        ),
        (
            422,
            {
                "status": 422,
                "error": "Unprocessable Entity",
                "code": "validation_errors",
                "error_details": {"base": ["invoices_have_different_billing_entities"]},
            },
        ),
    ],
)
def test_both_shapes_of_different_billing_entities_give_the_same_code(
    status: int, body: dict[str, object]
) -> None:
    error = _error_of(status, body)
    assert isinstance(error, LagoStatusError)
    assert error.code == "invoices_have_different_billing_entities"
    assert error.status == status


def test_a_plain_validation_error_on_base_keeps_its_generic_code() -> None:
    error = _error_of(
        422,
        {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": {"base": ["something_else"]},
        },
    )
    assert isinstance(error, LagoStatusError)
    assert error.code == "validation_errors"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(404, LagoNotFoundError), (405, LagoMethodNotAllowedError), (401, LagoUnauthorizedError)],
)
def test_a_non_json_error_body_still_maps_by_status(
    status: int, cls: type[LagoStatusError]
) -> None:
    error = _error_of(status, text="<html><body>Oops</body></html>")
    assert type(error) is cls
    assert error.code is None
    assert "<html>" not in str(error)


def test_a_non_json_5xx_on_get_is_a_server_error_with_a_generic_message() -> None:
    with (
        make_client(_answer(502, text="<html>Bad gateway</html>"), max_retries=0) as client,
        pytest.raises(LagoServerError) as caught,
    ):
        client.get_customer("cust-1")
    assert str(caught.value) == (
        "GET /api/v1/customers/{external_id}: HTTP 502: "
        "Lago server error: HTTP 502 with a non-JSON body"
    )


def test_connect_errors_name_the_host_not_the_key() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with make_client(refuse, max_retries=0) as client, pytest.raises(LagoConnectionError) as caught:
        client.get_invoice("inv-1")
    assert "lago.test" in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_timeouts_are_timeout_errors() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with make_client(slow, max_retries=0) as client, pytest.raises(LagoTimeoutError):
        client.get_invoice("inv-1")


def test_the_key_is_in_no_repr_and_no_error_message() -> None:
    # Lago echoing the Authorization header back must not put the key in our message either.
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"status": 400, "error": "bad", "headers": dict(request.headers)}
        )

    with make_client(echo, max_retries=0) as client:
        assert API_KEY not in repr(client)
        with pytest.raises(LagoError) as caught:
            client.get_invoice("inv-1")
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)


def test_requests_carry_auth_user_agent_and_accept_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            404, json={"status": 404, "error": "Not Found", "code": "invoice_not_found"}
        )

    with make_client(handler) as client, pytest.raises(LagoNotFoundError):
        client.get_invoice("inv-1")
    headers = seen[0].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["user-agent"].startswith("lago-dunning/")
    assert headers["accept"] == "application/json"


def test_ids_are_escaped_into_one_path_segment() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"status": 404, "error": "Not Found"})

    with make_client(handler) as client, pytest.raises(LagoNotFoundError):
        client.get_customer("../invoices?x=1")
    assert seen[0].url.raw_path == b"/api/v1/customers/..%2Finvoices%3Fx%3D1"


def test_client_is_not_constructible_without_a_url_from_settings() -> None:
    from config.settings import load_settings

    with pytest.raises(ValueError, match="LAGO_API_URL"):
        LagoClient.from_settings(load_settings(lago_api_url=None))


def test_a_header_the_transport_refuses_is_a_request_error_that_never_quotes_it() -> None:
    from worker.cli.errors import describe

    def refuse(request: httpx.Request) -> httpx.Response:
        # What h11 raises for a header value with a line break in it.
        raise httpx.LocalProtocolError(f"Illegal header value b'Bearer {API_KEY}\\n'")

    with make_client(refuse, max_retries=0) as client, pytest.raises(LagoRequestError) as caught:
        client.get_invoice("inv-1")
    error = caught.value
    assert isinstance(error, LagoConnectionError)  # never sent: safe to try again later
    assert API_KEY not in str(error)
    assert "Bearer" not in str(error)
    assert "not valid HTTP" in str(error)
    message, code = describe(error)
    assert "cannot reach" not in message
    assert API_KEY not in message
    assert code == 1


def test_the_key_is_masked_in_any_transport_error_text() -> None:
    def leak(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused while sending Bearer {API_KEY}", request=request)

    with make_client(leak, max_retries=0) as client, pytest.raises(LagoConnectionError) as caught:
        client.get_invoice("inv-1")
    assert API_KEY not in str(caught.value)
    assert "Bearer ***" in str(caught.value)


@pytest.mark.parametrize("key", ["sk-secret\n", "sk secret", "sk-sécret", "sk-\x00secret"])
def test_a_key_that_cannot_be_a_header_is_refused_when_the_client_is_built(key: str) -> None:
    with pytest.raises(ValueError, match="the Lago API key contains") as caught:
        LagoClient("http://lago.test", SecretStr(key))
    assert "secret" not in str(caught.value)
    assert "sécret" not in str(caught.value)


def test_every_error_survives_pickling_with_its_fields() -> None:
    """Celery pickles a failed task's error; keyword-only constructors must not defeat it."""
    import pickle

    from worker.lago.errors import LagoAmbiguousError, LagoConnectionError, LagoUnprocessableError

    status = LagoUnprocessableError(
        "invalid", endpoint="POST /x", status=422, code="validation_errors",
        error_details={"email": ["invalid"]},
    )  # fmt: skip
    ambiguous = LagoAmbiguousError(
        "unknown", endpoint="POST /x", cause=LagoConnectionError("reset", endpoint="POST /x")
    )
    for error in (status, ambiguous):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
    copied = pickle.loads(pickle.dumps(status))
    assert (copied.status, copied.code, dict(copied.error_details)) == (
        422,
        "validation_errors",
        {"email": ["invalid"]},
    )
    assert str(pickle.loads(pickle.dumps(ambiguous)).cause) == "POST /x: reset"

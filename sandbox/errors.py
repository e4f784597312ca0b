"""Lago's error envelopes, raised by handlers and rendered by the app.

The shapes follow lago-api's `api_errors.rb` / `api_responses.rb` exactly (see
docs: lago-api.md section 0).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answered with Lago's JSON envelope."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code') or body.get('error')}")
        self.status = status
        self.body = body


def unauthorized() -> ApiError:
    return ApiError(401, {"status": 401, "error": "Unauthorized"})


def bad_request_missing_param(param: str) -> ApiError:
    message = f"BadRequest: param is missing or the value is empty or invalid: {param}"
    return ApiError(400, {"status": 400, "error": message})


def bad_request() -> ApiError:
    return ApiError(400, {"status": 400, "error": "Bad Request"})


def forbidden(code: str = "feature_unavailable") -> ApiError:
    return ApiError(403, {"status": 403, "error": "Forbidden", "code": code})


def not_found(resource: str) -> ApiError:
    return ApiError(404, {"status": 404, "error": "Not Found", "code": f"{resource}_not_found"})


def route_not_found() -> ApiError:
    return ApiError(404, {"status": 404, "error": "Not Found"})


def not_allowed(code: str) -> ApiError:
    return ApiError(405, {"status": 405, "error": "Method Not Allowed", "code": code})


def validation_failed(details: dict[str, Any]) -> ApiError:
    return ApiError(
        422,
        {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": details,
        },
    )


def internal_error() -> ApiError:
    return ApiError(500, {"status": 500, "error": "Internal Server Error"})


def too_many_requests() -> ApiError:
    return ApiError(429, {"status": 429, "error": "Too Many Requests"})

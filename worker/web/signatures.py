"""Verify the signature of a Lago webhook. Pure functions plus a small public-key cache.

Lago signs every webhook one of two ways (header `X-Lago-Signature-Algorithm`):
- `jwt`: `X-Lago-Signature` is an RS256 JWT `{"data": <raw body>, "iss": <Lago API URL>}`
  signed with the organization's RSA key; the public key comes from
  `GET /api/v1/webhooks/json_public_key` (base64 of a PEM). We accept RS256 only: a token
  whose header names HS256, `none` or anything else is refused before any key is used.
- `hmac`: `X-Lago-Signature` is base64(HMAC-SHA256(organization hmac key, raw body)),
  compared in constant time.

Every failure raises `SignatureError` whose `str()` is one line that never contains the body,
the signature or a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from enum import StrEnum

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import SecretStr

ACCEPTED_JWT_ALGORITHM = "RS256"


class SignatureAlgorithm(StrEnum):
    JWT = "jwt"
    HMAC = "hmac"


class SignatureError(Exception):
    """The webhook is not proven to come from Lago. `str()` is one line, safe to log."""


class KeyMismatchError(SignatureError):
    """A well-formed RS256 token that the current public key does not verify."""


class PublicKeyUnavailableError(Exception):
    """The webhook public key could not be fetched from Lago (try again later)."""


def parse_algorithm(value: str | None) -> SignatureAlgorithm:
    if value is None or value.strip() == "":
        raise SignatureError("missing X-Lago-Signature-Algorithm header")
    try:
        return SignatureAlgorithm(value.strip().lower())
    except ValueError:
        raise SignatureError(
            "unsupported X-Lago-Signature-Algorithm (expected jwt or hmac)"
        ) from None


def hmac_signature(body: bytes, key: SecretStr) -> str:
    """The signature Lago computes: base64(HMAC-SHA256(key, body))."""
    digest = hmac.new(key.get_secret_value().encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_hmac(body: bytes, signature: str, key: SecretStr) -> None:
    expected = hmac_signature(body, key).encode("ascii")
    # compare_digest needs equal types; a non-ASCII header simply cannot match.
    given = signature.strip().encode("ascii", errors="replace")
    if not hmac.compare_digest(expected, given):
        raise SignatureError("HMAC signature does not match the body")


def load_public_key(value: str | bytes) -> RSAPublicKey:
    """Accept a PEM, or the base64 of a PEM as Lago serves it; the key must be RSA."""
    raw = value.encode("ascii") if isinstance(value, str) else value
    raw = raw.strip()
    if not raw.startswith(b"-----BEGIN"):
        try:
            raw = base64.b64decode(raw, validate=False).strip()
        except (binascii.Error, ValueError):
            raise PublicKeyUnavailableError("the webhook public key is not base64") from None
    try:
        key = load_pem_public_key(raw)
    except (ValueError, TypeError):
        raise PublicKeyUnavailableError("the webhook public key is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise PublicKeyUnavailableError("the webhook public key is not an RSA key")
    return key


def normalize_issuer(url: str) -> str:
    return url.strip().rstrip("/")


def check_jwt_header(token: str) -> None:
    """Refuse a malformed token or any algorithm but RS256 before a key is even looked up."""
    try:
        header = jwt.get_unverified_header(token.strip())
    except jwt.DecodeError:
        raise SignatureError("JWT signature is not a well-formed token") from None
    if header.get("alg") != ACCEPTED_JWT_ALGORITHM:
        raise SignatureError(
            f"JWT algorithm {str(header.get('alg'))[:16]!r} refused (only RS256 is accepted)"
        )


def verify_jwt(body: bytes, token: str, public_key: RSAPublicKey, issuer: str) -> None:
    """Check the RS256 signature, the issuer, and that the signed `data` is the raw body."""
    token = token.strip()
    check_jwt_header(token)
    try:
        claims = jwt.decode(
            token,
            key=public_key,
            algorithms=[ACCEPTED_JWT_ALGORITHM],
            options={"require": ["iss", "data"], "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise KeyMismatchError("JWT signature does not verify with Lago's public key") from None
    except jwt.MissingRequiredClaimError as exc:
        raise SignatureError(f"JWT lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        raise SignatureError(f"JWT rejected: {type(exc).__name__}") from None
    if normalize_issuer(str(claims["iss"])) != normalize_issuer(issuer):
        raise SignatureError("JWT issuer is not the configured Lago URL")
    data = claims["data"]
    if not isinstance(data, str) or not hmac.compare_digest(data.encode("utf-8"), body):
        raise SignatureError("JWT data does not match the request body")


class PublicKeyCache:
    """Fetches Lago's webhook public key once and keeps it.

    A signature that fails with the cached key may mean Lago rotated its key, so `refresh()`
    fetches again, but at most once per `min_refresh_interval_s`: forged requests cannot make
    us hammer Lago. After a failed fetch, the next one waits `retry_after_failure_s`.
    Thread-safe.
    """

    def __init__(
        self,
        fetch: Callable[[], str | bytes],
        *,
        min_refresh_interval_s: float = 300.0,
        retry_after_failure_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._min_refresh_interval_s = min_refresh_interval_s
        self._retry_after_failure_s = retry_after_failure_s
        self._clock = clock
        self._lock = threading.Lock()
        self._key: RSAPublicKey | None = None
        self._fetched_at: float | None = None

    def get(self) -> RSAPublicKey:
        with self._lock:
            if self._key is None:
                if self._fetched_at is not None and (
                    self._clock() - self._fetched_at < self._retry_after_failure_s
                ):
                    raise PublicKeyUnavailableError(
                        "Lago's webhook public key could not be fetched recently; retry later"
                    )
                self._load()
            assert self._key is not None
            return self._key

    def refresh(self) -> RSAPublicKey | None:
        """Fetch a new key if the last fetch is old enough; None if it is too soon."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is not None and (
                now - self._fetched_at < self._min_refresh_interval_s
            ):
                return None
            self._load()
            return self._key

    def _load(self) -> None:
        self._fetched_at = self._clock()
        try:
            raw = self._fetch()
        except PublicKeyUnavailableError:
            raise
        except Exception as exc:
            raise PublicKeyUnavailableError(
                f"cannot fetch Lago's webhook public key: {type(exc).__name__}"
            ) from exc
        self._key = load_public_key(raw)


def verify_signature(
    body: bytes,
    *,
    algorithm_header: str | None,
    signature_header: str | None,
    hmac_key: SecretStr | None,
    public_keys: PublicKeyCache,
    issuer: str,
) -> SignatureAlgorithm:
    """Verify a webhook; return the algorithm used or raise `SignatureError`.

    May raise `PublicKeyUnavailableError` when a JWT cannot be checked because the key is
    unavailable (the sender should retry later).
    """
    algorithm = parse_algorithm(algorithm_header)
    if signature_header is None or signature_header.strip() == "":
        raise SignatureError("missing X-Lago-Signature header")
    if algorithm is SignatureAlgorithm.HMAC:
        if hmac_key is None:
            raise SignatureError("HMAC-signed webhook but DUNNING_WEBHOOK_HMAC_KEY is not set")
        verify_hmac(body, signature_header, hmac_key)
        return algorithm
    check_jwt_header(signature_header)
    try:
        verify_jwt(body, signature_header, public_keys.get(), issuer)
    except KeyMismatchError:
        fresh = public_keys.refresh()
        if fresh is None:
            raise
        verify_jwt(body, signature_header, fresh, issuer)
    return algorithm

"""Webhook signature checks as pure functions (the HTTP path is in test_webhook_server.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from pydantic import SecretStr

from tests.web.keys import (
    OTHER_PRIVATE_KEY,
    PRIVATE_KEY,
    forged_jwt,
    lago_hmac,
    lago_jwt,
    public_pem,
)
from worker.web.signatures import (
    PublicKeyCache,
    PublicKeyUnavailableError,
    SignatureAlgorithm,
    SignatureError,
    load_public_key,
    verify_hmac,
    verify_signature,
)

ISSUER = "https://lago.example.com"
BODY = json.dumps({"webhook_type": "invoice.payment_status_updated", "invoice": {}}).encode()
KEY = SecretStr("org-hmac-key")


def cache(pem: str | None = None) -> PublicKeyCache:
    value = pem or public_pem()
    return PublicKeyCache(lambda: value)


def verify(body: bytes, algorithm: str | None, signature: str | None, **kwargs: object) -> object:
    options: dict[str, object] = {"hmac_key": KEY, "public_keys": cache(), "issuer": ISSUER}
    options.update(kwargs)
    return verify_signature(
        body,
        algorithm_header=algorithm,
        signature_header=signature,
        **options,  # type: ignore[arg-type]
    )


def _b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def test_valid_jwt_and_hmac_are_accepted() -> None:
    assert verify(BODY, "jwt", lago_jwt(BODY, ISSUER)) is SignatureAlgorithm.JWT
    assert verify(BODY, "hmac", lago_hmac(BODY, "org-hmac-key")) is SignatureAlgorithm.HMAC


def test_issuer_trailing_slash_is_not_a_difference() -> None:
    assert verify(BODY, "jwt", lago_jwt(BODY, ISSUER + "/")) is SignatureAlgorithm.JWT


@pytest.mark.parametrize(
    ("algorithm", "signature", "message"),
    [
        (None, "x", "missing X-Lago-Signature-Algorithm"),
        ("jwt", None, "missing X-Lago-Signature header"),
        ("rsa", "x", "unsupported X-Lago-Signature-Algorithm"),
        ("jwt", "not-a-token", "not a well-formed token"),
        ("jwt", forged_jwt(BODY, ISSUER), "does not verify"),
        ("jwt", lago_jwt(BODY, "https://evil.example.com"), "issuer"),
        ("jwt", lago_jwt(b'{"webhook_type":"other"}', ISSUER), "data does not match"),
        ("hmac", lago_hmac(BODY, "another-key"), "does not match"),
        ("hmac", "", "missing X-Lago-Signature header"),
    ],
)
def test_bad_signatures_are_refused(
    algorithm: str | None, signature: str | None, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify(BODY, algorithm, signature)


def test_hs256_token_made_with_the_public_key_is_refused() -> None:
    # The classic confusion attack: an HMAC token keyed with the (public) RSA key.
    # PyJWT will not build one, so it is assembled by hand.
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = _b64url(json.dumps({"data": BODY.decode(), "iss": ISSUER}).encode())
    signing_input = header + b"." + claims
    mac = hmac.new(public_pem().encode(), signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + _b64url(mac)).decode()
    with pytest.raises(SignatureError, match="'HS256' refused"):
        verify(BODY, "jwt", token)


def test_unsigned_none_token_is_refused() -> None:
    header = _b64url(b'{"alg":"none","typ":"JWT"}')
    claims = _b64url(json.dumps({"data": BODY.decode(), "iss": ISSUER}).encode())
    token = (header + b"." + claims + b".").decode()
    with pytest.raises(SignatureError, match="'none' refused"):
        verify(BODY, "jwt", token)


def test_token_without_data_claim_is_refused() -> None:
    token = jwt.encode({"iss": ISSUER}, PRIVATE_KEY, algorithm="RS256")
    with pytest.raises(SignatureError, match="'data'"):
        verify(BODY, "jwt", token)


def test_hmac_signed_webhook_without_a_configured_key_is_refused() -> None:
    with pytest.raises(SignatureError, match="DUNNING_WEBHOOK_HMAC_KEY is not set"):
        verify(BODY, "hmac", lago_hmac(BODY, "org-hmac-key"), hmac_key=None)


def test_messages_never_contain_the_key_or_signature() -> None:
    signature = lago_hmac(BODY, "another-key")
    with pytest.raises(SignatureError) as caught:
        verify_hmac(BODY, signature, KEY)
    assert "org-hmac-key" not in str(caught.value)
    assert signature not in str(caught.value)


def test_public_key_accepts_pem_or_its_base64() -> None:
    pem = public_pem()
    assert load_public_key(pem).key_size == 2048
    assert load_public_key(base64.b64encode(pem.encode()).decode()).key_size == 2048
    with pytest.raises(PublicKeyUnavailableError):
        load_public_key("bm90IGEga2V5")  # base64 of "not a key"


def test_key_cache_fetches_once_and_refreshes_at_most_once_per_interval() -> None:
    fetched: list[int] = []
    now = [1000.0]

    def fetch() -> str:
        fetched.append(1)
        return public_pem()

    keys = PublicKeyCache(fetch, min_refresh_interval_s=60, clock=lambda: now[0])
    keys.get()
    keys.get()
    assert len(fetched) == 1
    assert keys.refresh() is None  # too soon: forged requests cannot force fetches
    now[0] += 61
    assert keys.refresh() is not None
    assert len(fetched) == 2


def test_rotated_key_is_picked_up_after_a_mismatch() -> None:
    current = [public_pem(OTHER_PRIVATE_KEY)]
    now = [0.0]
    rotating = PublicKeyCache(lambda: current[0], min_refresh_interval_s=10, clock=lambda: now[0])
    rotating.get()  # the old key is cached
    current[0] = public_pem()  # Lago rotated
    now[0] = 11.0
    accepted = verify(BODY, "jwt", lago_jwt(BODY, ISSUER), public_keys=rotating)
    assert accepted is SignatureAlgorithm.JWT


def test_key_fetch_failure_is_reported_as_unavailable() -> None:
    def broken() -> str:
        raise ConnectionError("refused")

    with pytest.raises(PublicKeyUnavailableError, match="ConnectionError"):
        verify(BODY, "jwt", lago_jwt(BODY, ISSUER), public_keys=PublicKeyCache(broken))


def test_junk_tokens_never_trigger_a_key_fetch() -> None:
    fetched: list[int] = []

    def fetch() -> str:
        fetched.append(1)
        return public_pem()

    keys = PublicKeyCache(fetch)
    for token in ("garbage", "eyJhbGciOiJub25lIn0.eyJkYXRhIjoiIn0."):
        with pytest.raises(SignatureError):
            verify(BODY, "jwt", token, public_keys=keys)
    assert fetched == []


def test_a_failed_key_fetch_is_not_retried_at_once() -> None:
    attempts: list[int] = []
    now = [0.0]

    def broken() -> str:
        attempts.append(1)
        raise ConnectionError("refused")

    keys = PublicKeyCache(broken, retry_after_failure_s=10, clock=lambda: now[0])
    token = lago_jwt(BODY, ISSUER)
    for _ in range(3):
        with pytest.raises(PublicKeyUnavailableError):
            verify(BODY, "jwt", token, public_keys=keys)
    assert len(attempts) == 1
    now[0] = 11.0
    with pytest.raises(PublicKeyUnavailableError):
        verify(BODY, "jwt", token, public_keys=keys)
    assert len(attempts) == 2

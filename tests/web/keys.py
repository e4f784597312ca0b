"""Signing helpers for webhook tests: what Lago does to a body, done with our own test keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(private: rsa.RSAPrivateKey = PRIVATE_KEY) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def lago_jwt(
    body: bytes, issuer: str, *, private: rsa.RSAPrivateKey = PRIVATE_KEY, **extra: Any
) -> str:
    return jwt.encode({"data": body.decode(), "iss": issuer, **extra}, private, algorithm="RS256")


def forged_jwt(body: bytes, issuer: str) -> str:
    """A token signed with a key that is not Lago's."""
    return lago_jwt(body, issuer, private=OTHER_PRIVATE_KEY)


def lago_hmac(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()

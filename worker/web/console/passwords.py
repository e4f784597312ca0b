"""Console password hashes: scrypt (memory-hard, in the standard library) with a random salt.

Format: `scrypt$n=32768,r=8,p=1$<salt, base64>$<key, base64>`: the parameters travel with the
hash, so stronger ones can be chosen later without breaking the hashes already set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
N, R, P = 2**15, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
#: Refuse parameters that would take more memory than this (a hostile or mistyped hash).
MAX_MEMORY = 256 * 1024 * 1024
MIN_PASSWORD_LENGTH = 12
DAMAGED = "the hash is damaged: run `dunning console-password` again"


class PasswordHashError(ValueError):
    """The configured hash cannot be read. `str()` is one line, never the hash."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY, dklen=KEY_BYTES
    )


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, n, r, p)
    return f"{SCHEME}$n={n},r={r},p={p}${_b64(salt)}${_b64(key)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise PasswordHashError("not a scrypt hash from `dunning console-password`")
    try:
        params = dict(item.split("=", 1) for item in parts[1].split(","))
        n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(parts[2], validate=True)
        key = base64.b64decode(parts[3], validate=True)
    except (ValueError, KeyError) as exc:
        raise PasswordHashError(
            "the hash is damaged: run `dunning console-password` again"
        ) from exc
    if n < 2 or n & (n - 1) or not 0 < r <= 64 or not 0 < p <= 16 or 128 * n * r > MAX_MEMORY:
        raise PasswordHashError("the hash has unusable scrypt parameters")
    if not salt or len(key) != KEY_BYTES:
        raise PasswordHashError(DAMAGED)
    return n, r, p, salt, key


def check_hash(encoded: str) -> None:
    """Raise `PasswordHashError` if `encoded` cannot be used to check a password."""
    _parse(encoded)


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches (constant-time comparison of the derived keys)."""
    n, r, p, salt, key = _parse(encoded)
    return hmac.compare_digest(_derive(password, salt, n, r, p), key)

"""Signed session cookies, per-session CSRF tokens and one-time form nonces.

A cookie is `<payload>.<signature>`: the payload (base64url JSON) says the session id, who
logged in (None before login) and when it expires; the signature is HMAC-SHA256 under the
session key. A cookie whose signature does not match, that cannot be read or that expired is
no session at all. The key comes from `DUNNING_CONSOLE_SECRET_KEY`, else it is derived from
the password hash; either way it is bound to the hash, so a new password logs everyone out.

- the CSRF token of a session is HMAC(key, "csrf" + session id): nothing to store;
- a form nonce is a random value plus HMAC(key, "nonce" + session id + value): only the
  session it was issued to can post it, and the action it carries records it (unique) in the
  ledger, so the same form posted twice applies once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

COOKIE_NAME = "dunning_console"
_CONTEXT = b"lago-dunning console session v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    user: str | None  # who logged in; None: a visitor who has only seen the login form
    expires_at: datetime

    @property
    def logged_in(self) -> bool:
        return self.user is not None


class SessionKeys:
    """Signs and checks cookies, CSRF tokens and form nonces. Never shows its key."""

    def __init__(self, *, password_hash: str, secret_key: str | None) -> None:
        base = (secret_key or password_hash).encode("utf-8")
        bound = _CONTEXT + b"|" + password_hash.encode("utf-8")
        self._key_bytes = hmac.new(base, bound, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "SessionKeys(<hidden>)"

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self._key_bytes, "|".join(parts).encode("utf-8"), hashlib.sha256).digest()

    def new_session(self, *, user: str | None, now: datetime, lifetime: timedelta) -> Session:
        return Session(secrets.token_hex(16), user, now + lifetime)

    def encode(self, session: Session) -> str:
        body = {
            "sid": session.sid,
            "user": session.user,
            "exp": int(session.expires_at.timestamp()),
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{_b64(self._mac('cookie', payload))}"

    def decode(self, cookie: str | None, *, now: datetime) -> Session | None:
        """The session in a genuine, unexpired cookie; None for anything else."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        payload, signature = cookie.split(".")
        try:
            if not hmac.compare_digest(_unb64(signature), self._mac("cookie", payload)):
                return None
            body = json.loads(_unb64(payload))
            sid, user, expires = body["sid"], body["user"], int(body["exp"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        if not isinstance(sid, str) or not (user is None or isinstance(user, str)):
            return None
        expires_at = datetime.fromtimestamp(expires, tz=now.tzinfo)
        if expires_at <= now:
            return None
        return Session(sid, user, expires_at)

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac("csrf", session.sid))

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(
            token.encode("utf-8"), self.csrf_token(session).encode("utf-8")
        )

    def form_nonce(self, session: Session) -> str:
        value = secrets.token_hex(16)
        return f"{value}.{_b64(self._mac('nonce', session.sid, value))[:32]}"

    def nonce_ok(self, session: Session, nonce: str | None) -> bool:
        if not nonce or nonce.count(".") != 1 or len(nonce) > 100:
            return False
        value, signature = nonce.split(".")
        expected = _b64(self._mac("nonce", session.sid, value))[:32]
        return hmac.compare_digest(signature.encode("utf-8"), expected.encode("utf-8"))

"""Lago-style webhooks: envelope, signature headers and background delivery with retries.

Signing follows lago-api `Webhook#generate_headers`: `X-Lago-Signature` is either an RS256 JWT
of `{"data": <raw body>, "iss": <api url>}` or base64(HMAC-SHA256(hmac_key, raw body));
`X-Lago-Signature-Algorithm` says which; `X-Lago-Unique-Key` stays the same across retries.
Delivery runs on a daemon thread so API responses never wait for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.model import JsonObject, dump_json, utc_now_iso

SignatureAlgorithm = Literal["jwt", "hmac"]
SUCCESS_STATUSES = frozenset({200, 201, 202, 204})


class RsaKeyPair:
    """The RSA key the sandbox signs JWT webhooks with (made fresh at start)."""

    def __init__(self) -> None:
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key_base64 = base64.b64encode(pem).decode()

    def sign_jwt(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._private, algorithm="RS256")

    def __repr__(self) -> str:
        return "RsaKeyPair(<private>)"


@dataclass(slots=True)
class WebhookConfig:
    url: str | None = None
    algorithm: SignatureAlgorithm = "jwt"
    hmac_key: str = field(default="", repr=False)
    max_attempts: int = 3
    retry_delay_seconds: float = 0.5
    timeout_seconds: float = 5.0

    def public_json(self) -> JsonObject:
        """The settings without the HMAC key."""
        return {
            "url": self.url,
            "algorithm": self.algorithm,
            "hmac_key_set": bool(self.hmac_key),
            "max_attempts": self.max_attempts,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
        }


@dataclass(slots=True)
class Delivery:
    unique_key: str
    webhook_type: str
    url: str
    body: bytes
    headers: dict[str, str]
    config: WebhookConfig
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered: bool = False
    created_at: str = field(default_factory=utc_now_iso)

    def summary(self) -> JsonObject:
        return {
            "unique_key": self.unique_key,
            "webhook_type": self.webhook_type,
            "url": self.url,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered": self.delivered,
            "created_at": self.created_at,
        }


def signature_headers(
    body: bytes, config: WebhookConfig, keys: RsaKeyPair, issuer: str, unique_key: str
) -> dict[str, str]:
    if config.algorithm == "hmac":
        digest = hmac.new(config.hmac_key.encode(), body, hashlib.sha256).digest()
        signature = base64.b64encode(digest).decode()
    else:
        signature = keys.sign_jwt({"data": body.decode(), "iss": issuer})
    return {
        "Content-Type": "application/json",
        "X-Lago-Signature": signature,
        "X-Lago-Signature-Algorithm": config.algorithm,
        "X-Lago-Unique-Key": unique_key,
    }


class WebhookSender:
    """Queues webhooks and delivers them from one background thread."""

    def __init__(self, keys: RsaKeyPair, organization_id: str) -> None:
        self.keys = keys
        self.organization_id = organization_id
        self.config = WebhookConfig()
        self.issuer = ""
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def send(self, webhook_type: str, object_type: str, payload: JsonObject) -> None:
        """Queue one webhook if a URL is configured; never blocks on the network."""
        config = self.config
        if not config.url:
            return
        envelope = {
            "webhook_type": webhook_type,
            "object_type": object_type,
            "organization_id": self.organization_id,
            object_type: payload,
        }
        body = dump_json(envelope)
        unique_key = str(uuid.uuid4())
        delivery = Delivery(
            unique_key=unique_key,
            webhook_type=webhook_type,
            url=config.url,
            body=body,
            headers=signature_headers(body, config, self.keys, self.issuer, unique_key),
            config=config,
        )
        with self._lock:
            self.deliveries.append(delivery)
        self._ensure_thread()
        self._queue.put(delivery)

    def summaries(self) -> list[JsonObject]:
        with self._lock:
            return [delivery.summary() for delivery in self.deliveries]

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with httpx.Client() as client:
            while True:
                delivery = self._queue.get()
                if delivery is None:
                    return
                self._deliver(client, delivery)

    def _deliver(self, client: httpx.Client, delivery: Delivery) -> None:
        config = delivery.config
        for attempt in range(1, config.max_attempts + 1):
            delivery.attempts = attempt
            try:
                response = client.post(
                    delivery.url,
                    content=delivery.body,
                    headers=delivery.headers,
                    timeout=config.timeout_seconds,
                )
            except httpx.HTTPError as exc:
                delivery.last_error = type(exc).__name__
            else:
                delivery.last_status = response.status_code
                if response.status_code in SUCCESS_STATUSES:
                    delivery.delivered = True
                    delivery.last_error = None
                    return
                delivery.last_error = f"HTTP {response.status_code}"
            if attempt < config.max_attempts:
                time.sleep(config.retry_delay_seconds * attempt)

"""Channels: the ways an intent asks a customer to pay (see `base`), built once per runtime."""

from __future__ import annotations

from config import Settings
from config.policies import PolicySet
from worker.lago import LagoClient
from worker.mail import sender_from_settings
from worker.services.instance import LicenceMemory
from worker.services.runtime import Runtime

from .auto import AutoChannel
from .base import AUTO, PAYMENT_REQUEST, RETRY_AND_EMAIL, Channel, ChannelSet
from .payment_request import PaymentRequestChannel
from .retry_and_email import MailSettings, RetryAndEmailChannel


def build_channels(
    settings: Settings, client: LagoClient, policies: PolicySet | None
) -> ChannelSet:
    """Every channel, wired to this Lago, these mail settings and this policy file."""
    payment_request = PaymentRequestChannel()
    retry_and_email = RetryAndEmailChannel(
        api=client,
        mailer=sender_from_settings(settings),
        mail=MailSettings(sender=settings.smtp_from, reply_to=settings.smtp_reply_to),
        policies=policies,
        lease_seconds=settings.lease_seconds,
    )
    memory = LicenceMemory(settings.data_dir, client.base_url)
    auto = AutoChannel(payment_request, retry_and_email, memory, settings.lease_seconds)
    return ChannelSet(
        {PAYMENT_REQUEST: payment_request, RETRY_AND_EMAIL: retry_and_email, AUTO: auto}
    )


def channels_for(rt: Runtime) -> ChannelSet:
    return build_channels(rt.settings, rt.client, rt.policies)


__all__ = [
    "AUTO",
    "PAYMENT_REQUEST",
    "RETRY_AND_EMAIL",
    "Channel",
    "ChannelSet",
    "build_channels",
    "channels_for",
]

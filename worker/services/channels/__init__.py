"""Channels: the ways an intent asks a customer to pay (see `base`)."""

"""Settings and the dunning policy schema. Imports nothing else of this project."""

from config.settings import LogFormat, Settings, SettingsError, load_settings, mask_url

__all__ = ["LogFormat", "Settings", "SettingsError", "load_settings", "mask_url"]

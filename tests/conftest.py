"""Shared pytest wiring: each fixture family lives in its own plugin module under tests/fixtures."""

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.sandbox",
    "tests.fixtures.smtp",
    "tests.fixtures.console",
    "tests.fixtures.browser",
    "tests.fixtures.redis",
]

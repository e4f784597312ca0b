"""The `dunning` command line. Each command group lives in its own module with `register()`;
`worker.cli.lazy` imports a module only when one of its commands runs.

Commands call services directly (in-process) and reach Celery tasks by name only.
"""

from __future__ import annotations

from worker.cli.lazy import build_cli

app = build_cli()


def main() -> None:
    """Console-script entry point: one-line errors and meaningful exit codes."""
    from worker.cli.errors import run_cli

    run_cli(app)

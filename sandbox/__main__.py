"""`python -m sandbox --help`."""

from sandbox.cli import main

main()

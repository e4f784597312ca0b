"""The ops console: server-rendered pages under /console in `dunning serve`.

Off (404) unless `DUNNING_CONSOLE_PASSWORD_HASH` is set. Pages read the ledger only through
`worker.read`; actions (pause, resume, retry) are the same services the CLI calls, each
recorded in `operator_actions` with who, when and why.
"""

"""`dunning serve`: the Starlette app receiving Lago webhooks and exposing metrics."""

"""One module per console page: each builds its template's context from `worker.read`."""

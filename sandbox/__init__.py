"""A local stand-in for Lago's REST API, for demos, tests, benchmarks and chaos runs.

Start it with `python -m sandbox` (or `dunning sandbox`), or in-process with
`sandbox.server.running_sandbox()`. The control plane is documented in `sandbox.control`
and `sandbox/README.md`. Nothing here imports the application under test.
"""

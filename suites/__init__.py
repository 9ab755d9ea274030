"""Validation suites for a live mesh deployment: `pytest suites --target URL ...`.

They treat the mesh as a black box: its HTTP API, its `/metrics`, Prometheus, Alertmanager and
the Kubernetes API. They import only contracts (the telemetry contract, the SLO catalog and the
rules generated from it, the identity wire format), never the runtime.
"""

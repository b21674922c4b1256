"""Observability: database probes, Prometheus metrics, /healthz and the HTTP endpoint."""

"""Running the service in production: Prometheus metrics, log lines and the access log,
/livez and /readyz, process figures for /healthz, garbage-collector tuning, the retention
pruner, Server-Timing, telling an outage from a bug, and stopping background tasks.
"""

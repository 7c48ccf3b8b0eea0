"""Webhooks: their administration and read side (registry.py), the outbox the run lifecycle writes
in its transaction, the deliverer loop that sends and retries, the targets' SSRF checks, the
sealing of signing secrets at rest, and the settings from the environment.
"""

"""State-change events and how they travel: the event types, their encoding and channels, the
publisher (messages.py), and the broker adapters under broker/ (in-memory, Redis pub/sub,
PostgreSQL LISTEN/NOTIFY) that carry them to every API process.
"""

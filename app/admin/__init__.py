"""Administration, the writes an ADMIN makes besides runs: users and their policy assignments,
policies, API tokens (list, look up, revoke), and the audit log each of these writes in the
same transaction as its change.
"""

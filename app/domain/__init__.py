"""The service's vocabulary, free of SQL and I/O: opaque ids, the contract's errors, UTC time as
integers, input validation, user statuses and run states (and the rule between them), roles,
the plain views that queries return and events carry (and the public version rule), and the
sentences of the audit log. Every other package of app/ builds on these.
"""

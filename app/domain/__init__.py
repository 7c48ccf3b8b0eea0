"""The service's vocabulary, free of SQL and I/O: opaque ids, the contract's errors, UTC time as
integers, input validation, the plain views that queries return and events carry, and the
sentences of the audit log. Every other package of app/ builds on these.
"""

"""Where the state lives: the database engines (SQLite's writer thread included), the tables, the
Alembic migrations and the check that a database is at the newest one, the counters kept in
the same transaction as each state change, and the unit of work that publishes a write's
events only after it commits.
"""

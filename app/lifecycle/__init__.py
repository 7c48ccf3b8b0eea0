"""The run lifecycle, the only writer of users' sync state: claiming due runs, progress, finish
and "sync now" (transitions.py), their SQL statements (sql.py), and requestSyncs over
many users in short write transactions (bulk_requests.py).
"""

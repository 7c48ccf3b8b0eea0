"""The read side: everything the page and the API query, without writing. Keyset pages of users
with exact totals (users.py, user_counts.py), what a page shows beside each user (relations.py),
all the users a filter selects in batches (user_batches.py, for the CSV export and bulk
requests), runs, failed items and policies, the metric cards, failure reasons and trends, the
audit log, and the cursors they share (pagination.py).
"""

"""The HTTP side and the composition root: asgi.py builds the application (GraphQL, subscriptions,
the page, probes and background loops) from the settings and the process's services; per-request
context, the body limit, CORS and browser headers, GraphiQL, the CSV export, and static/, the
Sync Status page's HTML, CSS and JavaScript.
"""

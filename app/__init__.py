"""The service without GraphQL, in packages by concern (README.md, *Layout*, has the map): domain,
store, lifecycle, reads, admin, auth, events, webhooks, ops, demo, cli, and web, the composition
root that wires in schema/, resolvers/ and subscriptions/.
"""

"""Who is calling and how much they may do: API tokens (hashed, per tenant and role, expiring or
revoked) and the authenticator that checks them, revocations reaching every process, the open
WebSockets of each token, when each token was last used, and the per-token rate limit.
"""

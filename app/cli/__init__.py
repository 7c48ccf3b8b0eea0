"""The `syncstatus` command (main.py: serve, db upgrade, prune, seed, demo, worker) and its
subcommands with logic of their own: `token create|list|revoke` with the demo's viewer token
(tokens.py) and `audit` (audit.py).
"""

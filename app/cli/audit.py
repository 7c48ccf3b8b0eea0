"""`syncstatus audit`: a tenant's audit log on standard output, newest first."""

from __future__ import annotations

import sys

from app.auth.tokens import tenant_by_name
from app.domain.errors import BadUserInput
from app.domain.timeutil import from_micros, parse_iso, to_micros
from app.reads.audit import AuditFilter, audit_page
from app.reads.pagination import MAX_PAGE_SIZE, PageArgs
from app.store.engine import open_database
from app.store.schema_version import ready_for_commands
from app.web.settings import Settings


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return to_micros(parse_iso(value))
    except ValueError:
        raise BadUserInput(f"--since is not an ISO 8601 time: {value!r}") from None


async def print_audit(
    settings: Settings, tenant: str, since: str | None, action: str | None
) -> int:
    try:
        filt = AuditFilter(action=action, since=_since(since))
    except BadUserInput as error:
        print(error.message, file=sys.stderr)
        return 2
    db = open_database(settings.database_url, timeout=settings.database_timeout_seconds)
    try:
        problem = await ready_for_commands(db)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        async with db.read() as session:
            row = await tenant_by_name(session, tenant, create=False)
            if row is None:
                print(f"no tenant named {tenant!r}", file=sys.stderr)
                return 1
            after: str | None = None
            while True:
                page, _ = await audit_page(
                    session, row.id, filt, PageArgs(first=MAX_PAGE_SIZE, after=after)
                )
                for _, event in page.items:
                    at = from_micros(event.at).isoformat(timespec="seconds")
                    who = f"{event.actor} ({event.actor_role})" if event.actor_role else event.actor
                    target = event.target_id or "-"
                    print(f"{at}  {event.action:<18} {who}  {target}  {event.summary}")
                if not page.has_next:
                    return 0
                after = page.items[-1][0]
    finally:
        await db.dispose()
